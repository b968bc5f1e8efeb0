#!/usr/bin/env bash
# Terminal 2 of 3: the enroller (the terminal or phone next to the device).
#
# Makes the enroller key (once) and publishes it for the service, waits until the service
# has allowed it, fetches bundles while pinning the service key, then waits for one device
# and onboards it. Compare the short authentication string it prints with the device's.
#
# Environment (all optional):
#   OCKAM_ENROLL   the command to run              (default: npx ockam-enroll)
#   SHARED_DIR     where keys are exchanged        (default: /tmp/ockam-enroll-example)
#   ENROLLER_HOME  the enroller's home             (default: $SHARED_DIR/homes/enroller)
#   SERVICE_HOST   the service's host              (default: 127.0.0.1)
#   SERVICE_PORT   the service's port              (default: 4100)
#   ENROLLER_HOST  where to wait for the device    (default: 127.0.0.1)
#   ENROLLER_PORT  port to wait for the device on  (default: 4200)
#   BUNDLE_COUNT   bundles to fetch                (default: 3)
#   DEVICE_NAME    pet name given to the device    (default: Robot Axiom)
set -euo pipefail

OE=${OCKAM_ENROLL:-npx ockam-enroll}
SHARED_DIR=${SHARED_DIR:-/tmp/ockam-enroll-example}
ENROLLER_HOME=${ENROLLER_HOME:-$SHARED_DIR/homes/enroller}
SERVICE_ADDR="tcp://${SERVICE_HOST:-127.0.0.1}:${SERVICE_PORT:-4100}"
LISTEN="${ENROLLER_HOST:-127.0.0.1}:${ENROLLER_PORT:-4200}"
BUNDLE_COUNT=${BUNDLE_COUNT:-3}
DEVICE_NAME=${DEVICE_NAME:-Robot Axiom}

# shellcheck source=examples/lib.sh
. "$(dirname "$0")/../lib.sh"

say() { printf '\n[enroller] %s\n' "$*"; }

mkdir -p "$SHARED_DIR"

if [ -e "$ENROLLER_HOME/enroller/enroller.key" ] && [ -s "$SHARED_DIR/enroller.key" ]; then
  say "an enroller already exists in $ENROLLER_HOME; reusing it"
else
  say "making the enroller key; the service must allow its public key"
  # stdout carries only the public key. Written to a temporary file first, so that terminal 1
  # never reads half of it.
  run enroller init --home "$ENROLLER_HOME" > "$SHARED_DIR/enroller.key.tmp"
  mv "$SHARED_DIR/enroller.key.tmp" "$SHARED_DIR/enroller.key"
fi

say "waiting for the service to allow this enroller (1-service.sh does it)"
until [ -e "$SHARED_DIR/enroller.allowed" ] && [ -s "$SHARED_DIR/service.key" ]; do sleep 1; done
SERVICE_KEY=$(cat "$SHARED_DIR/service.key")

say "fetching $BUNDLE_COUNT bundles over Noise XX, pinning the service key $SERVICE_KEY"
run enroller bundle fetch --service "$SERVICE_ADDR" --count "$BUNDLE_COUNT" --service-key "$SERVICE_KEY" --home "$ENROLLER_HOME"
run enroller bundle list --home "$ENROLLER_HOME"

say "waiting for the device on $LISTEN (run 3-device.sh in terminal 3)"
say "the enroller asks whether the device shows the same short authentication string: answer y only if it does"
# A marker for 3-device.sh (the device retries for a while if it is a moment early).
touch "$SHARED_DIR/enroller.listening"
trap 'rm -f "$SHARED_DIR/enroller.listening"' EXIT
run enroller onboard --listen "$LISTEN" --name "$DEVICE_NAME" --home "$ENROLLER_HOME"
