#!/usr/bin/env bash
# Terminal 3 of 3: the device (the enrollee).
#
# Makes the enrollment key EIK_B (once), meets the enroller over Noise XX, receives a
# bundle, is approved, and enrolls straight with the service. Then it asks the service,
# over a channel authenticated by its new identity key IK_B, how the service sees it.
#
# Environment (all optional):
#   OCKAM_ENROLL   the command to run       (default: npx ockam-enroll)
#   SHARED_DIR     the example's directory  (default: /tmp/ockam-enroll-example)
#   DEVICE_HOME    the device's home        (default: $SHARED_DIR/homes/device)
#   ENROLLER_HOST  the enroller's host      (default: 127.0.0.1)
#   ENROLLER_PORT  the enroller's port      (default: 4200)
#   DEVICE_NAME    the device's pet name    (default: Robot Axiom)
#   WAIT_FOR_ENROLLER  1: wait for 2-enroller.sh's marker in SHARED_DIR; 0 (on a machine
#                  of its own, with no shared directory): go straight on  (default: 1)
set -euo pipefail

OE=${OCKAM_ENROLL:-npx ockam-enroll}
SHARED_DIR=${SHARED_DIR:-/tmp/ockam-enroll-example}
DEVICE_HOME=${DEVICE_HOME:-$SHARED_DIR/homes/device}
ENROLLER_ADDR="tcp://${ENROLLER_HOST:-127.0.0.1}:${ENROLLER_PORT:-4200}"
DEVICE_NAME=${DEVICE_NAME:-Robot Axiom}
WAIT_FOR_ENROLLER=${WAIT_FOR_ENROLLER:-1}

# shellcheck source=examples/lib.sh
. "$(dirname "$0")/../lib.sh"

say() { printf '\n[device] %s\n' "$*"; }

if [ -e "$DEVICE_HOME/enrollee/ik_b.key" ]; then
  say "this device is already enrolled; to onboard afresh, remove $DEVICE_HOME (or all of $SHARED_DIR)"
  run enrollee status --home "$DEVICE_HOME"
  exit 0
elif [ -e "$DEVICE_HOME/enrollee/eik_b.key" ]; then
  say "an enrollee already exists in $DEVICE_HOME; reusing it"
else
  say "making the enrollment key EIK_B; the card it prints carries its public half"
  run enrollee init --name "$DEVICE_NAME" --home "$DEVICE_HOME"
fi

if [ "$WAIT_FOR_ENROLLER" = 1 ] && [ ! -e "$SHARED_DIR/enroller.listening" ]; then
  say "waiting until 2-enroller.sh is ready for the device"
  until [ -e "$SHARED_DIR/enroller.listening" ]; do sleep 1; done
fi

say "meeting the enroller at $ENROLLER_ADDR"
say "check that the short authentication string below matches the one the enroller shows"
# Exit status 4: the enroller could not be reached. It may be a moment from listening, so
# try again a few times. Any other status is final.
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  status=0
  run enrollee join --enroller "$ENROLLER_ADDR" --home "$DEVICE_HOME" || status=$?
  [ "$status" -eq 4 ] && [ "$attempt" -lt 10 ] || break
  say "the enroller is not listening yet; trying again in 1s"
  sleep 1
done
[ "$status" -eq 0 ] || exit "$status"

say "asking the service how it sees this device (Noise XX with IK_B and the service key)"
run enrollee status --home "$DEVICE_HOME"
