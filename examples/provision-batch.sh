#!/usr/bin/env bash
# Provision a batch of devices: fetch one bundle per device up front, then onboard the
# devices one after another through `enroller onboard --exec`. A device that fails is
# reported and skipped; the script exits 1 if any failed.
#
# For real devices reachable over ssh, set EXEC_TEMPLATE, where {device} is replaced by
# each name in DEVICES (each device must have run `ockam-enroll enrollee init` once):
#
#   DEVICES="robot-1 robot-2 robot-3" \
#   EXEC_TEMPLATE="ssh -T {device} ockam-enroll enrollee join --stdio --yes" \
#   examples/provision-batch.sh
#
# By default the devices are stand-ins on this machine: one home per device, initialised
# here, and reached through `sh -c '…'` instead of ssh. A local service runs in the
# background for the length of the script (with real devices, point SERVICE_PORT/SERVICE_HOST
# at where they can reach it); everything is removed on exit unless KEEP=1.
#
# Environment (all optional):
#   OCKAM_ENROLL   the command to run                        (default: npx ockam-enroll)
#   DEVICES        device names, separated by spaces         (default: robot-1 robot-2 robot-3)
#   EXEC_TEMPLATE  how to reach a device; {device} → name    (default: a local stand-in)
#   WORK_DIR       homes and logs                            (default: a new temporary directory)
#   SERVICE_HOST   address of the service put in bundles     (default: 127.0.0.1)
#   SERVICE_PORT   port of the local service                 (default: 4100)
#   KEEP           1 to keep WORK_DIR afterwards             (default: 0)
set -euo pipefail

OE=${OCKAM_ENROLL:-npx ockam-enroll}
DEVICES=${DEVICES:-robot-1 robot-2 robot-3}
WORK_DIR=${WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/ockam-enroll-batch.XXXXXX")}
SERVICE_HOST=${SERVICE_HOST:-127.0.0.1}
SERVICE_PORT=${SERVICE_PORT:-4100}
KEEP=${KEEP:-0}
ADDRESS="tcp://$SERVICE_HOST:$SERVICE_PORT"
STAND_IN=0
if [ -z "${EXEC_TEMPLATE:-}" ]; then
  STAND_IN=1
  EXEC_TEMPLATE="sh -c '$OE enrollee join --stdio --yes --home $WORK_DIR/devices/{device}'"
fi

SERVICE_HOME=$WORK_DIR/service
ENROLLER_HOME=$WORK_DIR/enroller
read -r -a NAMES <<< "$DEVICES"
COUNT=${#NAMES[@]}
[ "$COUNT" -gt 0 ] || { echo "DEVICES is empty" >&2; exit 2; }

# shellcheck source=examples/lib.sh
. "$(dirname "$0")/lib.sh"

say() { printf '\n==> %s\n' "$*"; }

SERVICE_PID=
cleanup_on_exit SERVICE_PID
mkdir -p "$WORK_DIR"

say "service: init, and start in the background (log: $WORK_DIR/service.log)"
SERVICE_KEY=$(run service init --home "$SERVICE_HOME" --address "$ADDRESS" --quiet)
start_service "$SERVICE_HOME" "$WORK_DIR/service.log"

say "enroller: init; the service allows it"
ENROLLER_KEY=$(run enroller init --home "$ENROLLER_HOME" --quiet)
run service enroller allow "$ENROLLER_KEY" --name "batch provisioning" --home "$SERVICE_HOME"

say "enroller: fetch $COUNT bundles (one per device) in one go, pinning the service key"
run enroller bundle fetch --service "$ADDRESS" --count "$COUNT" --service-key "$SERVICE_KEY" --home "$ENROLLER_HOME"

if [ "$STAND_IN" = 1 ]; then
  say "stand-in devices: one home each under $WORK_DIR/devices (real devices run enrollee init themselves)"
  for name in "${NAMES[@]}"; do
    run enrollee init --name "$name" --home "$WORK_DIR/devices/$name" --quiet > /dev/null
  done
fi

ok=0
failed=()
for name in "${NAMES[@]}"; do
  cmd=${EXEC_TEMPLATE//\{device\}/$name}
  say "onboarding $name"
  # --json: one result object per device on stdout, collected in results.jsonl.
  if run enroller onboard --exec "$cmd" --name "$name" --timeout 1m --json --home "$ENROLLER_HOME" >> "$WORK_DIR/results.jsonl"; then
    ok=$((ok + 1))
  else
    status=$?
    echo "  $name: failed with exit status $status (see the messages above); continuing" >&2
    failed+=("$name")
  fi
done

say "results ($WORK_DIR/results.jsonl)"
cat "$WORK_DIR/results.jsonl"
run service enrollee list --home "$SERVICE_HOME"
run enroller bundle list --home "$ENROLLER_HOME"

say "$ok of $COUNT devices onboarded${failed[*]:+; failed: ${failed[*]}}"
[ "${#failed[@]}" -eq 0 ]
