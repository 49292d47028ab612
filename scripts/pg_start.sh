#!/usr/bin/env bash
# Install (from Debian's packages, when absent) and start PostgreSQL on loopback, with a password role
# and an empty test database. Prints the SQLAlchemy URL on its last line.
# Usage: scripts/pg_start.sh [DBNAME]   (default darl_test)
set -euo pipefail
db=${1:-darl_test}
user=darl
pass=darl
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "installing PostgreSQL from Debian's packages..." >&2
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >&2
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$ver main$"; then
  $SUDO pg_createcluster "$ver" main >&2
fi
if ! pg_lsclusters -h | grep -q "^$ver *main .*online"; then
  $SUDO pg_ctlcluster "$ver" main start >&2
fi
for _ in $(seq 1 30); do
  pg_isready -h 127.0.0.1 -p 5432 -q && break
  sleep 0.5
done
psql_admin() { $SUDO runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname='$user'")" ]; then
  psql_admin -c "CREATE ROLE $user LOGIN CREATEDB PASSWORD '$pass'" >&2
fi
if [ -z "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname='$db'")" ]; then
  psql_admin -c "CREATE DATABASE $db OWNER $user" >&2
fi
echo "postgresql+psycopg://$user:$pass@127.0.0.1:5432/$db"
