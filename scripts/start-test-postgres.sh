#!/usr/bin/env bash
# Starts the machine's PostgreSQL cluster (creating it if needed) and a role the tests use.
# Prints the SQLAlchemy URL on stdout; the tests create one database per test from it.
set -euo pipefail

role=vdc_test
password=vdc_test

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if [[ -z "$version" ]]; then
  echo "PostgreSQL is not installed (scripts/install-host-packages.sh test)" >&2
  exit 1
fi
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
  pg_createcluster "$version" main >/dev/null
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
  pg_ctlcluster "$version" main start >&2
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 1
done

as_postgres() { runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qAt "$@"; }
if [[ "$(as_postgres -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" != 1 ]]; then
  as_postgres -c "CREATE ROLE $role LOGIN CREATEDB PASSWORD '$password'" >&2
fi
echo "postgresql+psycopg://$role:$password@127.0.0.1:$port/postgres"
