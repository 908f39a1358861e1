# Shared by bench/run.sh and bench/profile.sh (sourced): the release build, a work directory
# removed at exit (kept with KEEP=1), the processes started (PIDS, stopped at exit), free_port, wait_for and run_rsyslog.
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

# run_rsyslog PORT: an rsyslogd on 127.0.0.1:PORT (TCP) writing what it receives, raw, to
# $WORK/rsyslog/received.log; added to PIDS, returns once it accepts connections.
run_rsyslog() {
    mkdir -p "$WORK/rsyslog"
    cat >"$WORK/rsyslog/rsyslog.conf" <<CONF
global(workDirectory="$WORK/rsyslog")
module(load="imtcp")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="out") { action(type="omfile" file="$WORK/rsyslog/received.log" template="raw") }
input(type="imtcp" address="127.0.0.1" port="$1" ruleset="out")
CONF
    rsyslogd -n -f "$WORK/rsyslog/rsyslog.conf" -i "$WORK/rsyslog/pid" >"$WORK/rsyslog/log" 2>&1 &
    PIDS+=($!)
    wait_for 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1"
}
