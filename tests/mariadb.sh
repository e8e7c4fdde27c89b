# Shared by tests/run and benches/run: a throwaway MariaDB from the installed
# server binaries, in a temp dir, on a free port. Source it after tests/pg.sh
# (for free_port and make_test_certs), then `start_mariadb DIR [extra mariadbd options...]`;
# `stop_mariadb DIR` stops it. It sets MY_PORT and MY_URL: a user `gatehouse`
# with password `gatehouse` that owns the database `gatehouse_test`; and
# MY_CA, the CA (PEM) that signed the server's TLS certificate for 127.0.0.1.
# A DIR that already holds a server from an earlier run is started again as is.

ensure_mariadb_installed() {
  if ! command -v mariadb-install-db >/dev/null || [ ! -x /usr/sbin/mariadbd ]; then
    echo "==> installing the MariaDB server (mariadb-install-db not found)" >&2
    if [ "$(id -u)" -ne 0 ]; then echo "mariadb-install-db is missing; install the mariadb-server package (needs root)" >&2; return 1; fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server mariadb-client >/dev/null
  fi
}

start_mariadb() {
  local dir=$1; shift
  mkdir -p "$dir"
  MY_PORT=$(free_port)
  local fresh=1
  [ -d "$dir/data/mysql" ] && fresh=0
  if [ $fresh = 1 ]; then
    # TLS: a throwaway CA and a server certificate for 127.0.0.1 / localhost.
    make_test_certs "$dir"
    mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$dir/data" \
      --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1 \
      || { cat "$dir/install.log" >&2; return 1; }
  fi
  /usr/sbin/mariadbd --no-defaults --user="$(id -un)" --datadir="$dir/data" \
    --port="$MY_PORT" --bind-address=127.0.0.1 --socket="$dir/sock" --pid-file="$dir/pid" \
    --log-error="$dir/error.log" --skip-log-bin --innodb-flush-log-at-trx-commit=0 \
    --max-connections=300 --ssl-ca="$dir/ca.pem" --ssl-cert="$dir/server.pem" --ssl-key="$dir/server.key" "$@" >"$dir/stderr.log" 2>&1 &
  local i
  for i in $(seq 1 120); do
    if mariadb-admin --no-defaults --socket="$dir/sock" -uroot ping >/dev/null 2>&1; then break; fi
    sleep 0.25
  done
  if [ $fresh = 1 ]; then
    mariadb --no-defaults --socket="$dir/sock" -uroot -e "
      CREATE DATABASE gatehouse_test CHARACTER SET utf8mb4;
      CREATE USER 'gatehouse'@'%' IDENTIFIED BY 'gatehouse';
      GRANT ALL ON *.* TO 'gatehouse'@'%';" \
      || { cat "$dir/error.log" >&2; return 1; }
  fi
  MY_URL="mysql://gatehouse:gatehouse@127.0.0.1:$MY_PORT/gatehouse_test"
  MY_CA="$dir/ca.pem"
  export MY_PORT MY_URL MY_CA
}

stop_mariadb() {
  mariadb-admin --no-defaults --socket="$1/sock" -uroot shutdown >/dev/null 2>&1 || true
}
