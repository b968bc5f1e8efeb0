# shellcheck shell=bash
# Shared by the example scripts (sourced, not run). Expects OE, the ockam-enroll command;
# cleanup_on_exit also expects WORK_DIR and KEEP.

# run ARGS…: shows the command on stderr, quoted for the shell (stdout carries the
# command's own data), then runs it.
run() {
  { printf '  $ ockam-enroll'
    for a in "$@"; do
      case $a in
        *[\"\$\`\\]*) printf " '%s'" "${a//\'/\'\\\'\'}" ;;
        *\'*) printf ' "%s"' "$a" ;;
        '' | *[!A-Za-z0-9_./:@=+,-]*) printf " '%s'" "$a" ;;
        *) printf ' %s' "$a" ;;
      esac
    done
    printf '\n'; } >&2
  $OE "$@"
}

# start_service HOME LOG [FLAGS…]: runs `service start` in the background, in its own
# process group (set -m), so that stopping the group also stops whatever $OE starts beneath
# it (npx runs the CLI as a grandchild); waits for its ' listening ' line; sets SERVICE_PID.
start_service() {
  local home=$1 log=$2
  shift 2
  set -m
  $OE service start --home "$home" "$@" 2> "$log" &
  SERVICE_PID=$!
  set +m
  until grep -q ' listening ' "$log" 2>/dev/null; do
    kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$log" >&2; echo "the service did not start" >&2; exit 1; }
    sleep 0.2
  done
}

# stop_group PID: SIGTERM to the process group led by PID, then reaps it.
stop_group() {
  [ -n "${1:-}" ] || return 0
  kill -TERM -- "-$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# cleanup_on_exit VAR…: on exit, stops the process groups whose PIDs the named variables
# hold, and removes WORK_DIR unless KEEP=1; an interrupt exits 130.
cleanup_on_exit() {
  CLEANUP_PID_VARS="$*"
  trap cleanup_ EXIT
  trap 'exit 130' INT TERM
}
cleanup_() {
  local status=$? v
  for v in $CLEANUP_PID_VARS; do stop_group "${!v:-}"; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK_DIR"; else rm -rf "$WORK_DIR"; fi
  exit "$status"
}
