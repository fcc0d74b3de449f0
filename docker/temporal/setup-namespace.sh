#!/bin/sh
# Waits for the Temporal frontend, creates the namespace unless it exists and registers
# Dormouse's search attributes in it, with the `temporal` CLI of the temporalio/admin-tools
# image. The `temporal-setup` one-shot of docker-compose.yml: Dormouse's processes start once it
# has exited 0. Idempotent; it mirrors ensureNamespace in dev/temporal-server.ts.
#
#   setup-namespace.sh NAME=TYPE...      e.g. ActorName=Keyword ActorGeneration=Int
#
# Reads TEMPORAL_ADDRESS (host:port of the frontend) and TEMPORAL_NAMESPACE.
set -eu

: "${TEMPORAL_ADDRESS:?}" "${TEMPORAL_NAMESPACE:?}"
: "${SETUP_ATTEMPTS:=90}" "${SETUP_INTERVAL_SECONDS:=2}"
if [ "$#" -eq 0 ]; then
  echo "usage: setup-namespace.sh NAME=TYPE..." >&2
  exit 2
fi
for spec in "$@"; do
  case $spec in
    *=*) ;;
    *) echo "setup-namespace: expected NAME=TYPE, got '$spec'" >&2; exit 2 ;;
  esac
  case ${spec%%=*} in
    '' | *[!A-Za-z0-9_]*) echo "setup-namespace: bad search attribute name in '$spec'" >&2; exit 2 ;;
  esac
done

ns() { temporal operator "$@" --address "$TEMPORAL_ADDRESS" --namespace "$TEMPORAL_NAMESPACE"; }

# retry WHAT COMMAND...: runs COMMAND until it succeeds, SETUP_ATTEMPTS times at most.
retry() {
  what=$1
  shift
  attempt=1
  until "$@" >/dev/null 2>&1; do
    if [ "$attempt" -ge "$SETUP_ATTEMPTS" ]; then
      echo "setup-namespace: gave up waiting for $what; last attempt:" >&2
      "$@" >&2 || true
      exit 1
    fi
    attempt=$((attempt + 1))
    sleep "$SETUP_INTERVAL_SECONDS"
  done
}

retry "the Temporal frontend at $TEMPORAL_ADDRESS" temporal operator cluster health --address "$TEMPORAL_ADDRESS"

if ns namespace describe >/dev/null 2>&1; then
  echo "setup-namespace: namespace $TEMPORAL_NAMESPACE exists"
elif output=$(ns namespace create 2>&1); then
  echo "setup-namespace: created namespace $TEMPORAL_NAMESPACE"
else
  case $output in
    *"already exists"*) echo "setup-namespace: namespace $TEMPORAL_NAMESPACE exists" ;;
    *) printf '%s\n' "$output" >&2; exit 1 ;;
  esac
fi

# A new namespace reaches the operator service through the server's namespace cache, which can
# lag the create by seconds.
retry "namespace $TEMPORAL_NAMESPACE to accept search attributes" ns search-attribute list

# registered_type NAME: the type NAME is registered with, upper case and without the
# INDEXED_VALUE_TYPE_ prefix (KEYWORD, INT, ...); empty if it is not registered. Parses
# `search-attribute list --output json`, {"customAttributes": {"ActorName": "INDEXED_VALUE_TYPE_KEYWORD", ...}},
# with sed rather than jq, which not every admin-tools image has.
registered_type() {
  ns search-attribute list --output json |
    tr -d '\n' |
    sed -n 's/.*"customAttributes"[[:space:]]*:[[:space:]]*{\([^}]*\)}.*/\1/p' |
    tr ',' '\n' |
    sed -n "s/^[[:space:]]*\"$1\"[[:space:]]*:[[:space:]]*\"\(INDEXED_VALUE_TYPE_\)\{0,1\}\([A-Za-z_]*\)\".*/\2/p" |
    tr '[:lower:]' '[:upper:]'
}

upper() { printf '%s' "$1" | tr '[:lower:]' '[:upper:]'; }

for spec in "$@"; do
  name=${spec%%=*}
  type=${spec#*=}
  have=$(registered_type "$name")
  if [ "$have" = "$(upper "$type")" ]; then
    echo "setup-namespace: search attribute $name ($type) exists"
    continue
  fi
  if [ -n "$have" ]; then
    echo "setup-namespace: search attribute $name has type $have, Dormouse needs $type" >&2
    exit 1
  fi
  # One call per attribute: given several --name flags the CLI (1.9.1) silently registers only
  # the first.
  ns search-attribute create --name "$name" --type "$type" >/dev/null
  echo "setup-namespace: registered search attribute $name ($type)"
done

# Trust but verify: the CLI has reported success for attributes it did not register.
missing=
for spec in "$@"; do
  name=${spec%%=*}
  [ "$(registered_type "$name")" = "$(upper "${spec#*=}")" ] || missing="$missing $name"
done
if [ -n "$missing" ]; then
  echo "setup-namespace: still not registered in $TEMPORAL_NAMESPACE:$missing" >&2
  exit 1
fi
echo "setup-namespace: namespace $TEMPORAL_NAMESPACE is ready"
