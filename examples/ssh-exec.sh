#!/usr/bin/env bash
# Onboarding through ssh: the enroller runs the device's side as a child process and talks
# to it over the child's stdin/stdout. The device needs no open port and no network path
# to the enroller; the service only has to be reachable from the device.
#
# The real thing, with the device reachable as `robot` over ssh:
#
#   ssh robot ockam-enroll enrollee init --name "Robot Axiom"      # once, on the device
#   ockam-enroll enroller onboard --exec "ssh -T robot ockam-enroll enrollee join --stdio --yes"
#
# `enrollee join --stdio` keeps stdout for the binary channel frames and writes everything
# else to stderr, which ssh passes through to the enroller's terminal. `-T` asks ssh for no
# pseudo-terminal, so nothing rewrites the bytes on the way. The device has no terminal to
# confirm the short authentication string on, hence `--yes` there; the enroller still asks
# "does the enrollee show …? [y/N]" on its own terminal before it approves anything.
#
# So that this script runs on one machine, `sh -c '…'` stands in for `ssh robot …`: the
# "device" is a second home on this machine. A service runs in the background for the
# length of the script; everything is removed on exit unless KEEP=1.
#
# Environment (all optional):
#   OCKAM_ENROLL   the command to run             (default: npx ockam-enroll)
#   WORK_DIR       homes and logs                 (default: a new temporary directory)
#   SERVICE_PORT   port of the local service      (default: 4100)
#   DEVICE_NAME    the device's pet name          (default: Robot Axiom)
#   KEEP           1 to keep WORK_DIR afterwards  (default: 0)
set -euo pipefail

OE=${OCKAM_ENROLL:-npx ockam-enroll}
WORK_DIR=${WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/ockam-enroll-ssh.XXXXXX")}
SERVICE_PORT=${SERVICE_PORT:-4100}
DEVICE_NAME=${DEVICE_NAME:-Robot Axiom}
KEEP=${KEEP:-0}
ADDRESS="tcp://127.0.0.1:$SERVICE_PORT"

SERVICE_HOME=$WORK_DIR/service
ENROLLER_HOME=$WORK_DIR/enroller
DEVICE_HOME=$WORK_DIR/device

# shellcheck source=examples/lib.sh
. "$(dirname "$0")/lib.sh"

say() { printf '\n==> %s\n' "$*"; }

SERVICE_PID=
cleanup_on_exit SERVICE_PID
mkdir -p "$WORK_DIR"

say "service: init, and start in the background (log: $WORK_DIR/service.log)"
SERVICE_KEY=$(run service init --home "$SERVICE_HOME" --address "$ADDRESS" --quiet)
start_service "$SERVICE_HOME" "$WORK_DIR/service.log"

say "enroller: init; the service allows it; fetch a bundle, pinning the service key"
ENROLLER_KEY=$(run enroller init --home "$ENROLLER_HOME" --quiet)
run service enroller allow "$ENROLLER_KEY" --name "ssh example" --home "$SERVICE_HOME"
run enroller bundle fetch --service "$ADDRESS" --service-key "$SERVICE_KEY" --home "$ENROLLER_HOME"

say "device: make its enrollment key (over ssh this is: ssh robot ockam-enroll enrollee init)"
run enrollee init --name "$DEVICE_NAME" --home "$DEVICE_HOME" --quiet > /dev/null

# The device side, as the enroller will run it. With ssh:
#   DEVICE_CMD="ssh -T robot ockam-enroll enrollee join --stdio --yes"
DEVICE_CMD="sh -c '$OE enrollee join --stdio --yes --home $DEVICE_HOME'"

say "enroller: onboard the device through --exec; both sides print the short authentication string"
run enroller onboard --exec "$DEVICE_CMD" --home "$ENROLLER_HOME"

say "device: ask the service how it sees this device"
run enrollee status --home "$DEVICE_HOME"
run service enrollee list --home "$SERVICE_HOME"
