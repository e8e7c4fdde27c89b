# Shared by tests/run and benches/run: a throwaway PostgreSQL from the
# installed server binaries, in a temp dir, on a free port. Source it, then
# call `start_pg DIR [extra postgres -c settings...]`; `stop_pg DIR` stops it.
# With PG_PASSWORD set, TCP logins need that password (scram-sha-256), so a
# wrong one is refused as on a real server; the socket stays trust.
# With PG_TLS set, the server also accepts TLS with a certificate from a
# throwaway CA, which it exports as PG_CA.

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

ensure_pg_installed() {
  if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    echo "==> installing the PostgreSQL server (initdb not found)" >&2
    if [ "$(id -u)" -ne 0 ]; then echo "initdb is missing; install the postgresql package (needs root)" >&2; return 1; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
}

# make_test_certs DIR: a throwaway CA (DIR/ca.pem) and a server certificate
# for 127.0.0.1 / localhost (DIR/server.pem, DIR/server.key).
make_test_certs() {
  (cd "$1" &&
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=gatehouse-test-ca &&
    openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=localhost &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >server.ext &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile server.ext
  ) >"$1/tls.log" 2>&1 || { cat "$1/tls.log" >&2; return 1; }
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
  if [ -n "${PG_TLS:-}" ]; then
    local certs="$dir.certs"
    mkdir -p "$certs" && make_test_certs "$certs"
    [ "$(id -u)" -eq 0 ] && chown -R postgres: "$certs"
    chmod 600 "$certs/server.key"
    opts="$opts -c ssl=on -c ssl_cert_file=$certs/server.pem -c ssl_key_file=$certs/server.key"
    PG_CA="$certs/ca.pem"
    export PG_CA
  fi
  as_db_user "$bin/pg_ctl" -D "$dir" -l "$dir/log" -w -o "$opts" start >/dev/null
  PG_CONNINFO="host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres"
  if [ -n "${PG_PASSWORD:-}" ]; then PG_CONNINFO="$PG_CONNINFO password=$PG_PASSWORD"; fi
  export PG_PORT PG_CONNINFO
}

stop_pg() {
  as_db_user "$(pg_bin)/pg_ctl" -D "$1" -m fast stop >/dev/null 2>&1 || true
}
