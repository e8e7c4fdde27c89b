# Shared by tests/run and benches/run: a throwaway PostgreSQL from the
# installed server binaries, in a temp dir, on a free port. Source it, then
# call `start_pg DIR [extra postgres -c settings...]`; `stop_pg DIR` stops it.
# With PG_PASSWORD set, TCP logins need that password (scram-sha-256), so a
# wrong one is refused as on a real server; the socket stays trust.

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

ensure_pg_installed() {
  if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    echo "==> installing the PostgreSQL server (initdb not found)" >&2
    if [ "$(id -u)" -ne 0 ]; then echo "initdb is missing; install the postgresql package (needs root)" >&2; return 1; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

as_db_user() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_pg DIR [-c name=value ...]: sets PG_PORT and PG_CONNINFO.
start_pg() {
  local dir=$1; shift
  local bin; bin=$(pg_bin)
  mkdir -p "$dir"
  chmod 755 "$(dirname "$dir")" 2>/dev/null || true
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  PG_PORT=$(free_port)
  if [ -n "${PG_PASSWORD:-}" ]; then
    local pwfile; pwfile=$(mktemp)
    printf '%s\n' "$PG_PASSWORD" >"$pwfile"; chmod 644 "$pwfile"
    as_db_user "$bin/initdb" -D "$dir" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
  else
    as_db_user "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  local opts="-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200 $*"
  as_db_user "$bin/pg_ctl" -D "$dir" -l "$dir/log" -w -o "$opts" start >/dev/null
  PG_CONNINFO="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres"
  if [ -n "${PG_PASSWORD:-}" ]; then PG_CONNINFO="$PG_CONNINFO password=$PG_PASSWORD"; fi
  export PG_PORT PG_CONNINFO
}

stop_pg() {
  as_db_user "$(pg_bin)/pg_ctl" -D "$1" -m fast stop >/dev/null 2>&1 || true
}
