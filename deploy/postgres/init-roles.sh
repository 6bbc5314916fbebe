#!/bin/sh
# The zone database's two roles, created once, when the official postgres image initialises an
# empty data volume (it runs /docker-entrypoint-initdb.d/* as the superuser over its local
# socket; compose.yaml mounts this file there). After this script the superuser is not used by
# anything: no gateway container is given its password.
#
#   APP_DB_OWNER  owns the database, its schema and (through `wearable-gateway migrate`) every
#                 table; not a superuser. migrate and `storage cluster` connect as it.
#   APP_DB_USER   the gateway's role: may connect, owns nothing; `migrate --grant-to` gives it
#                 the grants `serve` and the operator commands need, and no ALTER/DISABLE TRIGGER.
#
# Passwords are read from the Docker secret files named by *_PASSWORD_FILE, inside psql (`\set
# ... \`cat ...\``), so they are on no command line and in no environment variable.
set -eu
: "${POSTGRES_USER:?}" "${POSTGRES_DB:?}"
: "${APP_DB_OWNER:?}" "${APP_DB_OWNER_PASSWORD_FILE:?}"
: "${APP_DB_USER:?}" "${APP_DB_USER_PASSWORD_FILE:?}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password \
  --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v database="$POSTGRES_DB" \
  -v owner="$APP_DB_OWNER" -v owner_file="$APP_DB_OWNER_PASSWORD_FILE" \
  -v app="$APP_DB_USER" -v app_file="$APP_DB_USER_PASSWORD_FILE" <<'SQL'
\set owner_password `cat :'owner_file'`
\set app_password `cat :'app_file'`
CREATE ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'owner_password';
CREATE ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'app_password';
\unset owner_password
\unset app_password
ALTER DATABASE :"database" OWNER TO :"owner";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO :"app";
ALTER SCHEMA public OWNER TO :"owner";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
