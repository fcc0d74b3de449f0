#!/bin/sh
# Creates Temporal's two PostgreSQL databases (first run only) and brings their schemas up to
# date (every run) with temporal-sql-tool, from the temporalio/admin-tools image. The
# `temporal-schema` one-shot of docker-compose.yml; the server starts once it has exited 0.
#
# Reads the same variables as the Temporal server (docker-compose.yml's x-temporal-db): DB,
# POSTGRES_SEEDS, DB_PORT, POSTGRES_USER, POSTGRES_PWD, DBNAME, VISIBILITY_DBNAME.
# Safe to re-run: create-database tolerates an existing database, setup-schema -v 0.0 leaves an
# initialised one as it is, and update-schema applies only the versions it has not applied yet.
set -eu

: "${DB:?}" "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${POSTGRES_PWD:?}"
: "${DB_PORT:=5432}" "${DBNAME:=temporal}" "${VISIBILITY_DBNAME:=temporal_visibility}"
# The schema files that ship in the admin-tools image, per PostgreSQL plugin.
: "${TEMPORAL_SCHEMA_DIR:=/etc/temporal/schema/postgresql/v12}"

# temporal-sql-tool reads the password from SQL_PASSWORD: it stays off the command line.
SQL_PASSWORD=$POSTGRES_PWD
export SQL_PASSWORD

sql_tool() {
  temporal-sql-tool --plugin "$DB" --endpoint "$POSTGRES_SEEDS" --port "$DB_PORT" --user "$POSTGRES_USER" "$@"
}

# setup_database NAME SCHEMA: creates database NAME unless it exists, then migrates it with the
# versioned schema in $TEMPORAL_SCHEMA_DIR/SCHEMA/versioned.
setup_database() {
  database=$1
  versioned=$TEMPORAL_SCHEMA_DIR/$2/versioned
  if [ ! -d "$versioned" ]; then
    echo "setup-schema: no schema directory $versioned in this image" >&2
    exit 1
  fi
  if output=$(sql_tool --database "$database" create-database 2>&1); then
    echo "setup-schema: created database $database"
  else
    case $output in
      *"already exists"*) echo "setup-schema: database $database exists" ;;
      *)
        printf '%s\n' "$output" >&2
        echo "setup-schema: cannot create database $database" >&2
        exit 1
        ;;
    esac
  fi
  sql_tool --database "$database" setup-schema -v 0.0
  sql_tool --database "$database" update-schema -d "$versioned"
  echo "setup-schema: $database is up to date"
}

setup_database "$DBNAME" temporal
setup_database "$VISIBILITY_DBNAME" visibility
