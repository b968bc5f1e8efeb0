#!/usr/bin/env bash
# The offline flow, end to end, in one script: the enroller and the device never open a
# connection to each other. Everything between them is text (or a QR code of that text):
# the device's card goes to the enroller, a bundle comes back.
#
#   A. card first:   enrollee init --qr  →  enroller approve <card>  →  enrollee join --bundle @file
#   B. bundle first: enroller bundle show <id> --qr  →  enrollee join --bundle - --wait
#                    (the waiting device prints its card)  →  enroller approve <card>
#
# A service runs in the background for the length of the script; everything is removed on
# exit unless KEEP=1.
#
# Environment (all optional):
#   OCKAM_ENROLL   the command to run                    (default: npx ockam-enroll)
#   WORK_DIR       homes, logs and texts                 (default: a new temporary directory)
#   SERVICE_PORT   port of the local service             (default: 4100)
#   SHOW_QR        1 to print QR codes, 0 for text only  (default: 1)
#   KEEP           1 to keep WORK_DIR afterwards         (default: 0)
set -euo pipefail

OE=${OCKAM_ENROLL:-npx ockam-enroll}
WORK_DIR=${WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/ockam-enroll-qr.XXXXXX")}
SERVICE_PORT=${SERVICE_PORT:-4100}
SHOW_QR=${SHOW_QR:-1}
KEEP=${KEEP:-0}
ADDRESS="tcp://127.0.0.1:$SERVICE_PORT"

SERVICE_HOME=$WORK_DIR/service
ENROLLER_HOME=$WORK_DIR/enroller
DEVICE_A=$WORK_DIR/device-a
DEVICE_B=$WORK_DIR/device-b

# shellcheck source=examples/lib.sh
. "$(dirname "$0")/lib.sh"

say() { printf '\n==> %s\n' "$*"; }

SERVICE_PID=
JOIN_PID=
cleanup_on_exit SERVICE_PID JOIN_PID
mkdir -p "$WORK_DIR"

# --- the service, in the background -------------------------------------------------------
say "service: init, and start in the background (log: $WORK_DIR/service.log)"
SERVICE_KEY=$(run service init --home "$SERVICE_HOME" --address "$ADDRESS" --quiet)
echo "  service key: $SERVICE_KEY"
start_service "$SERVICE_HOME" "$WORK_DIR/service.log"

# --- the enroller: key, allowed by the service, two bundles ----------------------------------
say "enroller: init; the service allows it; fetch two bundles, pinning the service key"
ENROLLER_KEY=$(run enroller init --home "$ENROLLER_HOME" --quiet)
run service enroller allow "$ENROLLER_KEY" --name "qr example" --home "$SERVICE_HOME"
run enroller bundle fetch --service "$ADDRESS" --count 2 --service-key "$SERVICE_KEY" --home "$ENROLLER_HOME"

# --- A. card first ---------------------------------------------------------------------------
say "A. the device makes its key and shows its card"
CARD_A=$(run enrollee init --name "Robot Axiom" --home "$DEVICE_A")
echo "  card: $CARD_A"
if [ "$SHOW_QR" = 1 ]; then
  # The same card as a QR code, for the enroller's camera (enrollee init --qr prints it at init).
  run enrollee card --qr --home "$DEVICE_A"
fi

say "A. the enroller approves the card; stdout is the bundle to hand back"
run enroller approve "$CARD_A" --ttl 15m --home "$ENROLLER_HOME" > "$WORK_DIR/bundle-a.txt"
echo "  bundle: $(cut -c1-48 "$WORK_DIR/bundle-a.txt")…"
if [ "$SHOW_QR" = 1 ]; then
  # The approved bundle as a QR code (enroller approve --qr prints this instead of the text).
  BUNDLE_A_ID=$($OE enroller bundle list --json --home "$ENROLLER_HOME" |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const b=JSON.parse(s).bundles.find(x=>x.name==="Robot Axiom");console.log(b.id)})')
  run enroller bundle show "$BUNDLE_A_ID" --qr --home "$ENROLLER_HOME" 2>/dev/null
fi

say "A. the device enrolls with the bundle (from a file), straight with the service"
run enrollee join --bundle "@$WORK_DIR/bundle-a.txt" --home "$DEVICE_A"

# --- B. bundle first, the device waits for its approval ----------------------------------------
say "B. the enroller shows a fresh bundle"
BUNDLE_B_ID=$($OE enroller bundle list --json --home "$ENROLLER_HOME" |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{console.log(JSON.parse(s).bundles.find(x=>x.state==="fresh").id)})')
run enroller bundle show "$BUNDLE_B_ID" --home "$ENROLLER_HOME" > "$WORK_DIR/bundle-b.txt"
[ "$SHOW_QR" = 1 ] && run enroller bundle show "$BUNDLE_B_ID" --qr --home "$ENROLLER_HOME"

say "B. the device reads the bundle on stdin and waits (up to 2m) for the service to know it"
run enrollee init --name "Robot Bolt" --home "$DEVICE_B" --quiet > /dev/null
# stdin from a file; its diagnostics (with the card to approve) go to a log we can read.
printf '  $ ockam-enroll enrollee join --bundle - --wait 2m --home %q < bundle-b.txt\n' "$DEVICE_B" >&2
set -m  # its own process group, like the service's
$OE enrollee join --bundle - --wait 2m --home "$DEVICE_B" < "$WORK_DIR/bundle-b.txt" \
  > "$WORK_DIR/join-b.out" 2> "$WORK_DIR/join-b.log" &
JOIN_PID=$!
set +m
# While it waits, the device prints the card to approve: it names the bundle it holds.
until grep -q '^ockam-enroll: OEC1:' "$WORK_DIR/join-b.log" 2>/dev/null; do
  kill -0 "$JOIN_PID" 2>/dev/null || { cat "$WORK_DIR/join-b.log" >&2; exit 1; }
  sleep 0.2
done
sed 's/^/  │ /' "$WORK_DIR/join-b.log"
sed -n 's/^ockam-enroll: \(OEC1:.*\)$/\1/p' "$WORK_DIR/join-b.log" > "$WORK_DIR/card-b.txt"

say "B. the enroller approves that card (read from a file); the waiting device enrolls"
run enroller approve "@$WORK_DIR/card-b.txt" --home "$ENROLLER_HOME" > /dev/null
status=0; wait "$JOIN_PID" || status=$?; JOIN_PID=
sed 's/^/  │ /' "$WORK_DIR/join-b.out"
[ "$status" -eq 0 ] || { cat "$WORK_DIR/join-b.log" >&2; exit "$status"; }

# --- results -----------------------------------------------------------------------------------
say "the service's view, and the enroller's bundle cache"
run service enrollee list --home "$SERVICE_HOME"
run enroller bundle list --home "$ENROLLER_HOME"
say "done: two devices enrolled without ever connecting to the enroller"
