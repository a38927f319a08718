#!/bin/sh
# The part of the official postgres image's docker-entrypoint.sh that rsparkhub's small
# overlay relies on (docker/postgres-debian.Dockerfile): on the first start, a database
# cluster in $PGDATA with the superuser $POSTGRES_USER (password $POSTGRES_PASSWORD, needed
# from every other host) and the database $POSTGRES_DB; then the server, on every address.
set -eu
: "${PGDATA:?PGDATA is not set}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set}"
	mkdir -p "$PGDATA"
	chmod 0700 "$PGDATA"
	pw=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pw"
	initdb --pgdata="$PGDATA" --username="$user" --pwfile="$pw" --encoding=UTF8 \
		--locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256
	rm -f "$pw"
	printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
	if [ "$db" != postgres ]; then
		echo "CREATE DATABASE \"$db\" OWNER \"$user\";" |
			postgres --single -D "$PGDATA" -c config_file="$PGDATA/postgresql.conf" postgres >/dev/null
	fi
fi
if [ "${1:-}" = postgres ]; then
	shift
	exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
fi
exec "$@"
