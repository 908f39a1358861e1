#!/usr/bin/env bash
# Figures that stay put on a shared, loaded machine (wall time does not): instructions executed
# (valgrind's callgrind) and resident memory. Used for bench/RESULTS.md's dated profile sections.
#
#   bench/profile.sh cpu [--events N]   # `once` of N events (default 100000): file json alone,
#                                       # then file json + file cef + syslog cef (rsyslogd, when
#                                       # installed); instructions of the agent, top functions
#   bench/profile.sh mem [--orgs N]     # `once`, then `run`, with N organizations x 4 events (default
#                                       # 10000), poll 30 s: peak RSS of once, RSS of run after 62 s
#                                       # (as allocated, and with freed pages returned at once)
#
# Needs: valgrind (cpu), callgrind_annotate. Builds the release binary and the bench helper.
# Work files go to a temp dir, kept with --keep.
set -euo pipefail

MODE="${1:-}"; shift || true
EVENTS=100000; ORGS=10000; KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --events) EVENTS="$2"; shift 2 ;;
        --orgs) ORGS="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
case "$MODE" in cpu|mem) ;; *) sed -n 2,13p "$0"; exit 2 ;; esac

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
WORK_PREFIX=caf-profile
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
serve() { # serve DIR ARGS...: starts the bench simulator; its URL in DIR/base_url
    local dir="$1"; shift
    mkdir -p "$dir"
    "$HELPER" serve "$@" --dir "$dir" >"$dir/log" 2>&1 &
    PIDS+=($!)
    wait_for 600 test -s "$dir/base_url"
}
config() { # config FILE BASE_URL ORGS AGENT_EXTRA SINKS_TOML
    {
        printf '[codacy]\nbase_url = "%s"\npage_limit = 1000\nmax_concurrent_requests = 8\nmax_requests_per_second = 100000\n\n' "$2"
        printf '[agent]\nstate_dir = "%s"\ninitial_lookback = "365d"\n%s\n\n' "$(dirname "$1")/state" "$4"
        for i in $(seq 0 $(( $3 - 1 ))); do
            printf '[[organizations]]\nprovider = "gh"\nname = "bench-%s"\n\n' "$i"
        done
        printf '%s\n' "$5"
    } >"$1"
}
file_sink() { printf '[[sinks]]\nname = "%s"\ntype = "file"\nformat = "%s"\npath = "%s"\n' "$1" "$2" "$3"; }

if [ "$MODE" = cpu ]; then
    serve "$WORK/sim" --events "$EVENTS" --orgs 1; URL=$(cat "$WORK/sim/base_url")
    SINKS3="$(file_sink archive json "$WORK/three/out.ndjson")
$(file_sink archive-cef cef "$WORK/three/out.cef")"
    if command -v rsyslogd >/dev/null; then
        port=$(free_port); run_rsyslog "$port"
        SINKS3="$SINKS3
$(printf '[[sinks]]\nname = "siem"\ntype = "syslog"\nformat = "cef"\naddress = "tcp://127.0.0.1:%s"\n' "$port")"
    fi
    for run in one three; do
        mkdir -p "$WORK/$run/state"
        if [ "$run" = one ]; then sinks="$(file_sink archive json "$WORK/one/out.ndjson")"; else sinks="$SINKS3"; fi
        config "$WORK/$run/config.toml" "$URL" 1 "" "$sinks"
        valgrind --tool=callgrind --callgrind-out-file="$WORK/$run.callgrind" \
            "$BIN" once --config "$WORK/$run/config.toml" >"$WORK/$run/out" 2>"$WORK/$run/log"
        got=$(wc -l <"$WORK/$run/out.ndjson")
        [ "$got" = "$EVENTS" ] || { echo "$run delivered $got of $EVENTS; see $WORK/$run/log" >&2; exit 1; }
        echo "== $run: $(grep -c '^\[\[sinks' "$WORK/$run/config.toml") sink(s), $EVENTS events"
        callgrind_annotate --inclusive=no "$WORK/$run.callgrind" 2>/dev/null | sed -n "/^Ir/,\$p" | head -40 || true
    done
fi

if [ "$MODE" = mem ]; then
    # As bench/run.sh --only scale: one `once` pass delivers the backlog, then `run` polls every
    # 30 s with nothing new. RSS is read after the first interval (the first polls are spread
    # over it) and another 30 s; then again with jemalloc returning freed pages at once, which
    # leaves about the live heap plus the mapped binary.
    serve "$WORK/sim" --events 0 --orgs "$ORGS" --events-per-org 4; URL=$(cat "$WORK/sim/base_url")
    mkdir -p "$WORK/run/state"
    config "$WORK/run/config.toml" "$URL" "$ORGS" 'poll_interval = "30s"' "$(file_sink out json "$WORK/run/out.ndjson")"
    sed -i 's/initial_lookback = "365d"/initial_lookback = "2h"/' "$WORK/run/config.toml"
    /usr/bin/time -f '%M' -o "$WORK/once.rss" "$BIN" once --config "$WORK/run/config.toml" >/dev/null 2>"$WORK/run/once.log"
    echo "organizations: $ORGS; delivered: $(wc -l <"$WORK/run/out.ndjson"); once peak RSS: $(cat "$WORK/once.rss") kB"
    for conf in "" "dirty_decay_ms:0,muzzy_decay_ms:0"; do
        _RJEM_MALLOC_CONF="$conf" "$BIN" run --config "$WORK/run/config.toml" 2>"$WORK/run/log" &
        AGENT=$!; PIDS+=($AGENT)
        sleep 62
        echo "run, idle, _RJEM_MALLOC_CONF='$conf':" $(grep -E 'VmRSS|VmHWM|RssAnon' "/proc/$AGENT/status")
        kill "$AGENT"; wait "$AGENT" 2>/dev/null || true
    done
fi
