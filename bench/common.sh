# Shared by bench/run.sh and bench/profile.sh (sourced): the release build, a work directory
# removed at exit (kept with KEEP=1), the processes started (PIDS, stopped at exit), free_port and wait_for.
# Needs ROOT, CARGO_TARGET_DIR, KEEP and WORK_PREFIX set by the caller.
(cd "$ROOT" && cargo build --quiet --release --bin codacy-audit-forwarder --example bench)
BIN="$CARGO_TARGET_DIR/release/codacy-audit-forwarder"
HELPER="$CARGO_TARGET_DIR/release/examples/bench"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/$WORK_PREFIX.XXXXXX")"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then echo "work files kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
export CODACY_API_TOKEN=bench-token

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # wait_for SECONDS CMD...: poll until CMD succeeds
    local deadline=$(( $(date +%s) + $1 )); shift
    until "$@" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for: $*" >&2; return 1; }
        sleep 0.2
    done
}
