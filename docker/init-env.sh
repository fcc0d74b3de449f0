#!/bin/sh
# Writes .env for docker-compose.yml from .env.example, filling in fresh random secrets:
# POSTGRES_PASSWORD, DORMOUSE_ADMIN_TOKEN, and one runner token for DORMOUSE_RUNNER_POOL used by
# both DORMOUSE_RUNNER_TOKENS (the gateway's side) and DORMOUSE_RUNNER_TOKEN (the runner's).
# Never overwrites an existing file.
#
#   sh docker/init-env.sh [OUT]        OUT defaults to .env beside docker-compose.yml
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/.env}
if [ -e "$out" ]; then
  echo "init-env: $out exists; not touching it" >&2
  exit 1
fi

# secret: 48 hex digits (192 bits) from the kernel's generator; URL-safe, fine in DATABASE_URL.
secret() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

pool=$(sed -n 's/^DORMOUSE_RUNNER_POOL=//p' "$root/.env.example")
pool=${pool:-default}
runner_token=$(secret)
umask 077
sed \
  -e "s/^POSTGRES_PASSWORD=\$/POSTGRES_PASSWORD=$(secret)/" \
  -e "s/^DORMOUSE_ADMIN_TOKEN=\$/DORMOUSE_ADMIN_TOKEN=$(secret)/" \
  -e "s/^DORMOUSE_RUNNER_TOKENS=\$/DORMOUSE_RUNNER_TOKENS=$pool=$runner_token/" \
  -e "s/^DORMOUSE_RUNNER_TOKEN=\$/DORMOUSE_RUNNER_TOKEN=$runner_token/" \
  "$root/.env.example" >"$out"
echo "init-env: wrote $out (mode 600)"
