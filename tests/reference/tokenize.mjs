// Reference tokenizer for the HfTokenizer tests: @lenml/tokenizers (a fork of transformers.js) run by node.
// Reads one JSON request on stdin:
//   { "nodePrefix": "<npm --prefix folder holding @lenml/tokenizers>", "dir": "<folder with tokenizer.json and
//     tokenizer_config.json>", "texts": ["...", ...], "decode": [[ids], ...] }
// and prints one JSON object: { "plain": [[ids]...], "special": [[ids]...], "decoded": ["..."], "decodedSpecial": ["..."] }
// where plain = encode(text, add_special_tokens: false), special = encode(text, add_special_tokens: true), and
// decoded/decodedSpecial = decode(ids, skip_special_tokens: true/false) of each "decode" entry.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";

const request = JSON.parse(readFileSync(0, "utf8"));
const require = createRequire(join(request.nodePrefix, "package.json"));
const { TokenizerLoader } = require("@lenml/tokenizers");
const read = (name) => JSON.parse(readFileSync(join(request.dir, name), "utf8"));
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: read("tokenizer.json"),
  tokenizerConfig: read("tokenizer_config.json"),
});
const texts = request.texts ?? [];
const decode = request.decode ?? [];
const result = {
  plain: texts.map((t) => Array.from(tokenizer.encode(t, { add_special_tokens: false }))),
  special: texts.map((t) => Array.from(tokenizer.encode(t, { add_special_tokens: true }))),
  // (its decode refuses an empty list; the text of no ids is "")
  decoded: decode.map((ids) => (ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: true }))),
  decodedSpecial: decode.map((ids) => (ids.length === 0 ? "" : tokenizer.decode(ids, { skip_special_tokens: false }))),
};
process.stdout.write(JSON.stringify(result));
