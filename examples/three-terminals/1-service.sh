#!/usr/bin/env bash
# Terminal 1 of 3: the enrollment service.
#
# Makes the service (once), starts it, publishes its key for the enroller, and allows the
# enroller as soon as 2-enroller.sh has published the enroller's key. Then it keeps serving
# until Ctrl-C. See README.md in this directory.
#
# Environment (all optional):
#   OCKAM_ENROLL   the command to run         (default: npx ockam-enroll)
#   SHARED_DIR     where keys are exchanged   (default: /tmp/ockam-enroll-example)
#   SERVICE_HOME   the service's home         (default: $SHARED_DIR/homes/service)
#   SERVICE_HOST   address put in bundles     (default: 127.0.0.1)
#   SERVICE_PORT   port of the service        (default: 4100)
set -euo pipefail

OE=${OCKAM_ENROLL:-npx ockam-enroll}
SHARED_DIR=${SHARED_DIR:-/tmp/ockam-enroll-example}
SERVICE_HOME=${SERVICE_HOME:-$SHARED_DIR/homes/service}
SERVICE_HOST=${SERVICE_HOST:-127.0.0.1}
SERVICE_PORT=${SERVICE_PORT:-4100}
ADDRESS="tcp://$SERVICE_HOST:$SERVICE_PORT"

# shellcheck source=examples/lib.sh
. "$(dirname "$0")/../lib.sh"

say() { printf '\n[service] %s\n' "$*"; }

mkdir -p "$SHARED_DIR"

if [ -e "$SERVICE_HOME/service/ik_a.key" ]; then
  say "a service already exists in $SERVICE_HOME; reusing it"
  # `service init --json` is the only command that prints the key; keep the one we saved.
  [ -s "$SHARED_DIR/service.key" ] || { echo "missing $SHARED_DIR/service.key: remove $SERVICE_HOME and start again" >&2; exit 1; }
else
  say "making the service identity key IK_A, its first signed prekey and its store"
  # stdout carries only the service key (hex); the enroller pins it with --service-key.
  # Written to a temporary file first, so that terminal 2 never reads half of it.
  run service init --home "$SERVICE_HOME" --address "$ADDRESS" > "$SHARED_DIR/service.key.tmp"
  mv "$SHARED_DIR/service.key.tmp" "$SHARED_DIR/service.key"
fi
say "service key (give it to enrollers, here as $SHARED_DIR/service.key): $(cat "$SHARED_DIR/service.key")"

say "starting the service on $ADDRESS; its decision log follows"
printf '  $ ockam-enroll service start --home %q\n' "$SERVICE_HOME" >&2
# In its own process group (set -m), so that stopping the group also stops whatever
# $OE starts beneath it (npx runs the CLI as a grandchild).
set -m
$OE service start --home "$SERVICE_HOME" &
SERVICE_PID=$!
set +m
trap 'kill -TERM -- "-$SERVICE_PID" 2>/dev/null || true; wait "$SERVICE_PID" 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

say "waiting for the enroller's key in $SHARED_DIR/enroller.key (run 2-enroller.sh in terminal 2)"
until [ -s "$SHARED_DIR/enroller.key" ]; do
  kill -0 "$SERVICE_PID" 2>/dev/null || { echo "the service stopped" >&2; exit 1; }
  sleep 1
done
ENROLLER_KEY=$(cat "$SHARED_DIR/enroller.key")
run service enroller allow "$ENROLLER_KEY" --name "terminal 2" --home "$SERVICE_HOME"
touch "$SHARED_DIR/enroller.allowed"

say "serving; press Ctrl-C to stop. From another shell:"
echo "  ${OE} service enrollee list --home $SERVICE_HOME"
wait "$SERVICE_PID"
