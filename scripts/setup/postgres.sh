#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1, for the run store's PostgreSQL tests:
#   scripts/setup/postgres.sh start DIR [PORT]   installs Debian's postgresql when missing, creates a cluster in DIR
#                                               (trust auth, user postgres) and starts it; prints a connection string
#   scripts/setup/postgres.sh stop DIR           stops it
# The server runs as the postgres user (it refuses root). Idempotent.
set -euo pipefail
cmd=${1:?usage: postgres.sh start|stop DIR [PORT]}
dir=${2:?usage: postgres.sh start|stop DIR [PORT]}
port=${3:-55432}

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ "$cmd" = stop ]; then
  [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$dir/data" stop -m fast -w >/dev/null 2>&1 || true
  exit 0
fi
[ "$cmd" = start ] || { echo "postgres.sh: unknown command $cmd" >&2; exit 2; }

if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "postgres.sh: installing postgresql from Debian" >&2
  exec 9>/tmp/research-apt.lock; flock -w 1800 9   # one apt-get at a time: test lists run side by side
  export DEBIAN_FRONTEND=noninteractive
  sudo_ apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  sudo_ apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends postgresql >&2
  exec 9>&-   # release the lock: the daemons started below must not inherit it
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
[ "$(id -u)" = 0 ] && chown postgres "$dir"
if [ ! -f "$dir/data/PG_VERSION" ]; then
  as_pg "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
fi
if ! as_pg "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50" start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
fi
echo "Host=127.0.0.1;Port=$port;Username=postgres;Database=postgres"
