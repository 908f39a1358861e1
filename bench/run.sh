#!/usr/bin/env bash
# Backfill / preview / idle benchmark of codacy-audit-forwarder against the jq pipeline from
# Codacy's documentation and a bare serde_json reference, all on the same generated data.
#
#   bench/run.sh [--events N] [--idle-seconds S] [--only LIST] [--keep]
#
# --only takes a comma list of sections: backfill (one file sink per format), sinks (four sinks at
# once, and syslog and Kafka alone), baselines (jq, curl|jq, reference), preview, idle, scale
# (10,000 organizations x 4 events: one pass, then idle), isolation (latency of a file sink beside
# a webhook that never answers), export (`preview` of the same events as one JSON array and as
# NDJSON, and `export` from the simulator, each in every format, against jq's documented CSV row
# on both files; `--only export --events 200000` is the issue's 200k-event case). A partial run
# prints its rows but leaves bench/RESULTS.md alone.
#
# Needs: cargo, jq, curl, /usr/bin/time (GNU time). Optional: rsyslogd, tansu (four-sink row).
# Writes the table to stdout and to bench/RESULTS.md. Work files go to a temp dir (~1 GB for 1M
# events), removed at the end unless --keep.
set -euo pipefail

EVENTS=1000000
IDLE_SECONDS=60
KEEP=0
ONLY=backfill,sinks,baselines,preview,idle,scale,isolation,export
SCALE_ORGS=10000
while [ $# -gt 0 ]; do
    case "$1" in
        --events) EVENTS="$2"; shift 2 ;;
        --idle-seconds) IDLE_SECONDS="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --scale-orgs) SCALE_ORGS="$2"; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n 2,16p "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

want() { [[ ",$ONLY," == *",$1,"* ]]; }
FULL=0; [ "$ONLY" = backfill,sinks,baselines,preview,idle,scale,isolation,export ] && FULL=1

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
for tool in jq curl /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench needs $tool" >&2; exit 1; }
done

echo "building (release)..." >&2
WORK_PREFIX=caf-bench
# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"

NOTES=()


# measure NAME CMD...: wall seconds, CPU seconds (user+sys, children included) and peak RSS (KB).
declare -A WALL CPU RSS
measure() {
    local name="$1"; shift
    echo "  $name..." >&2
    sync
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.$name" "$@"
    read -r wall user sys rss < <(tail -n1 "$WORK/time.$name")
    WALL[$name]="$wall"
    CPU[$name]="$(echo "$user + $sys" | bc)"
    RSS[$name]="$rss"
}

# --- the simulator with the backlog -------------------------------------------------------------
if want backfill || want sinks || want baselines || want preview || want export; then
echo "generating $EVENTS events over ~360 days in the simulator..." >&2
mkdir -p "$WORK/sim"
"$HELPER" serve --events "$EVENTS" --orgs 1 --dir "$WORK/sim" 2>"$WORK/sim.log" &
SIM_PID=$!; PIDS+=($SIM_PID)
wait_for 600 test -s "$WORK/sim/base_url"
BASE_URL="$(cat "$WORK/sim/base_url")"
NOW_MS=$(( $(date +%s) * 1000 ))
FROM_MS=$(( NOW_MS - 365 * 86400000 ))

echo "dumping the pages the simulator serves..." >&2
"$HELPER" dump --base-url "$BASE_URL" --org gh/bench-0 --from "$FROM_MS" --to "$NOW_MS" --dir "$WORK/data" >&2
PAGES=("$WORK"/data/pages/*.json)
fi

# --- agent backfills ----------------------------------------------------------------------------
write_config() { # write_config FILE STATE_DIR ORG_COUNT SINKS_TOML
    {
        # The agent's polite default of 10 requests per second would make every row a measure
        # of that limit (a 1,000-page backfill takes 100 s at it): the rows measure the agent.
        printf '[codacy]\nbase_url = "%s"\npage_limit = 1000\nmax_requests_per_second = 100000\n\n' "$BASE_URL"
        printf '[agent]\nstate_dir = "%s"\ninitial_lookback = "365d"\n\n' "$2"
        for i in $(seq 0 $(( $3 - 1 ))); do
            printf '[[organizations]]\nprovider = "gh"\nname = "bench-%s"\n\n' "$i"
        done
        printf '%s\n' "$4"
    } >"$1"
}
file_sink() { printf '[[sinks]]\nname = "%s"\ntype = "file"\nformat = "%s"\npath = "%s"\n' "$1" "$2" "$3"; }

backfill() { # backfill NAME SINKS_TOML OUTFILE
    local name="$1" dir="$WORK/run-$1"
    mkdir -p "$dir/state"
    write_config "$dir/config.toml" "$dir/state" 1 "$2"
    measure "$name" "$BIN" once --config "$dir/config.toml" >"$dir/agent.out" 2>"$dir/agent.log"
    local got; got=$(wc -l <"$3")
    [ "$got" = "$EVENTS" ] || { echo "$name delivered $got of $EVENTS events; see $dir/agent.log" >&2; exit 1; }
    rm -f "$3"
}

if want backfill; then
echo "backfills (once, 1 organization, $EVENTS events, initial_lookback 365d, page_limit 1000)..." >&2
for fmt in json ecs cef; do
    backfill "agent-$fmt" "$(file_sink out "$fmt" "$WORK/run-agent-$fmt/out.ndjson")" "$WORK/run-agent-$fmt/out.ndjson"
done
fi

# Four sinks at once, where rsyslogd and tansu are installed.
RSYSLOG_PORT=""; KAFKA_PORT=""
start_rsyslog() {
    command -v rsyslogd >/dev/null || { NOTES+=("rsyslogd not installed: the four-sink runs have no syslog sink"); return; }
    RSYSLOG_PORT=$(free_port)
    run_rsyslog "$RSYSLOG_PORT"
    RSYSLOG_PID=${PIDS[-1]}
}
start_tansu() {
    command -v tansu >/dev/null || { NOTES+=("tansu not installed: the four-sink runs have no Kafka sink"); return; }
    KAFKA_PORT=$(free_port)
    tansu broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
    TANSU_PID=$!; PIDS+=($TANSU_PID)
    wait_for 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT"
    wait_for 30 tansu topic create codacy-audit --broker "tcp://127.0.0.1:$KAFKA_PORT" --partitions 1
}
if want sinks || want idle; then
    start_rsyslog
    start_tansu
fi
syslog_sink() { printf '[[sinks]]\nname = "siem"\ntype = "syslog"\nformat = "cef"\naddress = "tcp://127.0.0.1:%s"\n' "$RSYSLOG_PORT"; }
kafka_sink() { printf '[[sinks]]\nname = "bus"\ntype = "kafka"\nformat = "json"\nbrokers = "127.0.0.1:%s"\ntopic = "codacy-audit"\n' "$KAFKA_PORT"; }
four_sinks() { # four_sinks DIR
    file_sink archive json "$1/out.ndjson"
    file_sink archive-cef cef "$1/out.cef"
    [ -z "$RSYSLOG_PORT" ] || syslog_sink
    [ -z "$KAFKA_PORT" ] || kafka_sink
}
SINK_COUNT=2
[ -z "$RSYSLOG_PORT" ] || SINK_COUNT=$((SINK_COUNT + 1))
[ -z "$KAFKA_PORT" ] || SINK_COUNT=$((SINK_COUNT + 1))
# peer_cpu PID: CPU seconds a peer (rsyslogd, tansu) has used so far
peer_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat"; }
declare -A PEER_CPU
# lines FILE: how many lines a peer wrote (0 before it created the file)
lines() { if [ -e "$1" ]; then wc -l <"$1"; else echo 0; fi; }
if want sinks; then
    echo "four sinks at once, then syslog and Kafka alone..." >&2
    backfill "agent-4sinks" "$(four_sinks "$WORK/run-agent-4sinks")" "$WORK/run-agent-4sinks/out.ndjson"
    rm -f "$WORK/run-agent-4sinks/out.cef"
    # Alone: `once` returns when rsyslog has acknowledged at the TCP level / the broker has acked;
    # the row counts what rsyslog wrote to its file, which may trail by a moment.
    if [ -n "$RSYSLOG_PORT" ]; then
        dir="$WORK/run-agent-syslog"; mkdir -p "$dir/state"
        write_config "$dir/config.toml" "$dir/state" 1 "$(syslog_sink)"
        # rsyslogd keeps its output file open: count from what is there already.
        base=$(lines "$WORK/rsyslog/received.log"); c0=$(peer_cpu "$RSYSLOG_PID")
        measure agent-syslog "$BIN" once --config "$dir/config.toml" >"$dir/agent.out" 2>"$dir/agent.log"
        wait_for 60 bash -c "[ \"\$(wc -l <'$WORK/rsyslog/received.log')\" -ge $((base + EVENTS)) ]"
        PEER_CPU[agent-syslog]=$(echo "$(peer_cpu "$RSYSLOG_PID") - $c0" | bc)
    fi
    if [ -n "$KAFKA_PORT" ]; then
        dir="$WORK/run-agent-kafka"; mkdir -p "$dir/state"
        write_config "$dir/config.toml" "$dir/state" 1 "$(kafka_sink)"
        c0=$(peer_cpu "$TANSU_PID")
        measure agent-kafka "$BIN" once --config "$dir/config.toml" >"$dir/agent.out" 2>"$dir/agent.log"
        PEER_CPU[agent-kafka]=$(echo "$(peer_cpu "$TANSU_PID") - $c0" | bc)
    fi
fi

# --- baselines ----------------------------------------------------------------------------------
# The documented filter; jq's @csv refuses objects (actor, requestDetails), so those are turned
# into JSON text first, the least a user must add for the filter to run on real events.
JQ_ROW='[.actor, .action, .timestamp, .result, .source, .repositoryName, .requestDetails] | map(if type == "object" or type == "array" then tojson else . end) | @csv'
if want baselines; then
echo "baselines..." >&2
measure jq-pages jq -r ".data[] | $JQ_ROW" "${PAGES[@]}" >"$WORK/jq.csv"
# (@csv keeps newlines inside quoted fields, so a few rows span two lines.)
got=$(wc -l <"$WORK/jq.csv"); [ "$got" -ge "$EVENTS" ] || { echo "jq wrote $got lines" >&2; exit 1; }
rm -f "$WORK/jq.csv"

# curl | jq per page, following cursors: what a user's cron script does.
cat >"$WORK/curl-jq.sh" <<EOF
#!/usr/bin/env bash
set -euo pipefail
url="$BASE_URL/api/v3/organizations/gh/bench-0/audit?from=$FROM_MS&to=$NOW_MS&limit=1000"
cursor=""
while :; do
    page=\$(curl -sf -H "api-token: \$CODACY_API_TOKEN" "\$url\${cursor:+&cursor=\$cursor}")
    printf '%s' "\$page" | jq -r '.data[] | $JQ_ROW'
    cursor=\$(printf '%s' "\$page" | jq -r '.pagination.cursor // empty')
    [ -n "\$cursor" ] || break
done
EOF
chmod +x "$WORK/curl-jq.sh"
measure curl-jq "$WORK/curl-jq.sh" >"$WORK/curl-jq.csv"
got=$(wc -l <"$WORK/curl-jq.csv"); [ "$got" -ge "$EVENTS" ] || { echo "curl|jq wrote $got lines" >&2; exit 1; }
rm -f "$WORK/curl-jq.csv"

measure reference "$HELPER" reference --base-url "$BASE_URL" --org gh/bench-0 --from "$FROM_MS" --to "$NOW_MS" --out "$WORK/reference.ndjson"
rm -f "$WORK/reference.ndjson"
fi

# --- preview (mapping alone) vs jq on the same NDJSON file --------------------------------------
if want preview; then
echo "preview..." >&2
want baselines && measure jq-file jq -r "$JQ_ROW" "$WORK/data/events.ndjson" >/dev/null
for fmt in json ecs cef; do
    measure "preview-$fmt" "$BIN" preview --format "$fmt" "$WORK/data/events.ndjson" >/dev/null
done
fi

# --- export and preview of every shape vs jq's documented CSV row --------------------------------
if want export; then
echo "export: preview of a JSON array and NDJSON, export from the simulator, jq on both files..." >&2
# The same events as one JSON array (the shape the API and the documented jq filter read).
{ printf '['; paste -sd, "$WORK/data/events.ndjson"; printf ']\n'; } >"$WORK/data/events.json"
ARRAY_MB=$(( $(stat -c %s "$WORK/data/events.json") / 1048576 ))
measure jq-array jq -r ".[] | $JQ_ROW" "$WORK/data/events.json" >/dev/null
measure jq-ndjson jq -r "$JQ_ROW" "$WORK/data/events.ndjson" >/dev/null
dir="$WORK/run-export"; mkdir -p "$dir/state"
write_config "$dir/config.toml" "$dir/state" 1 "$(file_sink unused json "$dir/unused.ndjson")"
FROM_DATE=$(date -u -d "@$(( FROM_MS / 1000 ))" +%Y-%m-%dT%H:%M:%SZ)
TO_DATE=$(date -u -d "@$(( NOW_MS / 1000 + 1 ))" +%Y-%m-%dT%H:%M:%SZ)
for fmt in csv json ecs cef; do
    measure "preview-array-$fmt" "$BIN" preview --format "$fmt" "$WORK/data/events.json" >/dev/null
    measure "preview-ndjson-$fmt" "$BIN" preview --format "$fmt" "$WORK/data/events.ndjson" >/dev/null
    # The simulator is local: lift the default 10 requests/s politeness budget so the row
    # measures the export, not the token bucket (200 pages would take 20 s at 10/s).
    CODACY_FORWARDER__CODACY__MAX_REQUESTS_PER_SECOND=1000 \
        measure "export-$fmt" "$BIN" export --config "$dir/config.toml" --org gh/bench-0 --from "$FROM_DATE" --to "$TO_DATE" \
        --format "$fmt" --output "$dir/out.$fmt" 2>"$dir/export-$fmt.log"
    got=$(if [ "$fmt" = csv ]; then python3 -c 'import csv,sys; print(sum(1 for _ in csv.reader(open(sys.argv[1], newline=""))) - 1)' "$dir/out.$fmt"; else wc -l <"$dir/out.$fmt"; fi)
    [ "$got" = "$EVENTS" ] || { echo "export $fmt wrote $got of $EVENTS events; see $dir/export-$fmt.log" >&2; exit 1; }
    rm -f "$dir/out.$fmt"
done
fi

# --- idle: run, 10 organizations x 4 sinks, nothing new -----------------------------------------
if want idle; then
[ -z "${SIM_PID:-}" ] || { kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; }
echo "idle: 10 organizations x $SINK_COUNT sinks, ${IDLE_SECONDS}s..." >&2
rm -rf "$WORK/sim"; mkdir -p "$WORK/sim"
"$HELPER" serve --events 1000 --orgs 10 --dir "$WORK/sim" 2>"$WORK/sim-idle.log" &
PIDS+=($!)
wait_for 60 test -s "$WORK/sim/base_url"
BASE_URL="$(cat "$WORK/sim/base_url")"
IDIR="$WORK/run-idle"; mkdir -p "$IDIR/state"
write_config "$IDIR/config.toml" "$IDIR/state" 10 "$(four_sinks "$IDIR")"
"$BIN" run --config "$IDIR/config.toml" 2>"$IDIR/agent.log" &
AGENT=$!; PIDS+=($AGENT)
# The first pass (the 1000-event backlog to every sink) is done when the file sink has it all.
wait_for 120 bash -c "[ \"\$(wc -l <'$IDIR/out.ndjson')\" = 1000 ]"
sleep 2
ticks() { awk '{print $14 + $15}' "/proc/$AGENT/stat"; }
HZ=$(getconf CLK_TCK)
T0=$(ticks); S0=$(date +%s.%N)
sleep "$IDLE_SECONDS"
T1=$(ticks); S1=$(date +%s.%N)
IDLE_RSS=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status")
IDLE_ANON=$(awk '/RssAnon/ {print $2}' "/proc/$AGENT/status")
IDLE_CPU_PCT=$(echo "scale=4; 100 * ($T1 - $T0) / $HZ / ($S1 - $S0)" | bc)
kill "$AGENT"; wait "$AGENT" 2>/dev/null || true
fi

# --- scale: many organizations on one agent ------------------------------------------------------
if want scale; then
SCALE_POLL=30
echo "scale: $SCALE_ORGS organizations x 4 events, max_concurrent_requests 8..." >&2
SDIR="$WORK/run-scale"; mkdir -p "$SDIR/sim" "$SDIR/state"
"$HELPER" serve --events 0 --orgs "$SCALE_ORGS" --events-per-org 4 --dir "$SDIR/sim" 2>"$SDIR/sim.log" &
PIDS+=($!)
wait_for 600 test -s "$SDIR/sim/base_url"
{
    # The local simulator answers in microseconds: the rate cap is raised so that the pass
    # measures the agent, with the concurrency cap (what a real API feels) at 8.
    printf '[codacy]\nbase_url = "%s"\npage_limit = 1000\nmax_concurrent_requests = 8\nmax_requests_per_second = 100000\n\n' "$(cat "$SDIR/sim/base_url")"
    printf '[agent]\nstate_dir = "%s"\ninitial_lookback = "2h"\npoll_interval = "%ss"\n\n' "$SDIR/state" "$SCALE_POLL"
    for i in $(seq 0 $(( SCALE_ORGS - 1 ))); do
        printf '[[organizations]]\nprovider = "gh"\nname = "bench-%s"\n\n' "$i"
    done
    file_sink out json "$SDIR/out.ndjson"
} >"$SDIR/config.toml"
measure scale-pass "$BIN" once --config "$SDIR/config.toml" >"$SDIR/agent.out" 2>"$SDIR/agent.log"
got=$(lines "$SDIR/out.ndjson")
[ "$got" = $(( SCALE_ORGS * 4 )) ] || { echo "scale: delivered $got of $(( SCALE_ORGS * 4 )); see $SDIR/agent.log" >&2; exit 1; }
sleep 1.2
read -r _ SCALE_PASS_REQ _ SCALE_MAX_IN_FLIGHT <"$SDIR/sim/stats"
SCALE_REQ_PER_ORG=$(echo "scale=2; $SCALE_PASS_REQ / $SCALE_ORGS" | bc | sed 's/^\./0./')
"$BIN" run --config "$SDIR/config.toml" 2>"$SDIR/run.log" &
AGENT=$!; PIDS+=($AGENT)
# The first polls are spread over the first interval; measure the steady state after it.
sleep $(( SCALE_POLL + 2 ))
read -r _ R0 _ _ <"$SDIR/sim/stats"
HZ=$(getconf CLK_TCK)
T0=$(awk '{print $14 + $15}' "/proc/$AGENT/stat"); S0=$(date +%s.%N)
sleep "$IDLE_SECONDS"
T1=$(awk '{print $14 + $15}' "/proc/$AGENT/stat"); S1=$(date +%s.%N)
sleep 1.2
read -r _ R1 _ SCALE_MAX_IN_FLIGHT <"$SDIR/sim/stats"
SCALE_IDLE_RSS=$(awk '/VmRSS/ {print $2}' "/proc/$AGENT/status")
SCALE_IDLE_HWM=$(awk '/VmHWM/ {print $2}' "/proc/$AGENT/status")
SCALE_IDLE_CPU=$(echo "scale=3; 100 * ($T1 - $T0) / $HZ / ($S1 - $S0)" | bc | sed 's/^\./0./')
SCALE_IDLE_REQ=$(echo "scale=3; ($R1 - $R0) / $SCALE_ORGS / ($IDLE_SECONDS / $SCALE_POLL)" | bc | sed 's/^\./0./')
kill "$AGENT"; wait "$AGENT" 2>/dev/null || true
fi

# --- isolation: a healthy sink beside one that hangs ---------------------------------------------
if want isolation; then
echo "isolation: file sink beside a webhook that accepts and never answers, ${IDLE_SECONDS}s..." >&2
XDIR="$WORK/run-isolation"; mkdir -p "$XDIR/sim" "$XDIR/state"
"$HELPER" serve --events 0 --orgs 1 --produce-every-ms 500 --dir "$XDIR/sim" 2>"$XDIR/sim.log" &
PIDS+=($!)
wait_for 60 test -s "$XDIR/sim/base_url"
HANG_PORT=$(free_port)
python3 -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $HANG_PORT)); s.listen(64); held = []
while True: held.append(s.accept())
" &
PIDS+=($!)
{
    printf '[codacy]\nbase_url = "%s"\n\n' "$(cat "$XDIR/sim/base_url")"
    printf '[agent]\nstate_dir = "%s"\ninitial_lookback = "1h"\npoll_interval = "1s"\n\n' "$XDIR/state"
    printf '[[organizations]]\nprovider = "gh"\nname = "bench-0"\n\n'
    file_sink out json "$XDIR/out.ndjson"
    printf '\n[[sinks]]\nname = "hook"\ntype = "http"\nurl = "http://127.0.0.1:%s/hook"\ntimeout = "60s"\n' "$HANG_PORT"
} >"$XDIR/config.toml"
"$BIN" run --config "$XDIR/config.toml" 2>"$XDIR/agent.log" &
AGENT=$!; PIDS+=($AGENT)
sleep 3
# Latency of each event: when its line is seen in the file minus the time the producer stamped it.
ISOLATION=$(python3 - "$XDIR/out.ndjson" "$IDLE_SECONDS" <<'PY'
import json, sys, time, datetime
path, seconds = sys.argv[1], float(sys.argv[2])
def ts(v):
    if isinstance(v, (int, float)): return v / 1000
    return datetime.datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
lat, pos, end = [], 0, time.time() + seconds
with open(path) as f:
    f.seek(0, 2)
    while time.time() < end:
        line = f.readline()
        if not line:
            time.sleep(0.02); continue
        lat.append(time.time() - ts(json.loads(line)["timestamp"]))
lat.sort()
print(len(lat), "%.2f" % lat[-1] if lat else "-", "%.2f" % lat[len(lat) // 2] if lat else "-")
PY
)
read -r ISO_N ISO_MAX ISO_P50 <<<"$ISOLATION"
kill "$AGENT"; wait "$AGENT" 2>/dev/null || true
fi

# --- the table ----------------------------------------------------------------------------------
have() { [ -n "${WALL[$1]:-}" ]; }
ratio() { if have "$1" && have "$2"; then echo "$(echo "scale=2; ${WALL[$1]} / ${WALL[$2]}" | bc | sed 's/^\./0./')"; else echo "-"; fi; }
eps() { echo "$EVENTS / $1" | bc; }
mb() { echo "scale=1; $1 / 1024" | bc | sed 's/^\./0./'; }
row() { # row LABEL NAME NOTE: nothing when NAME was not measured
    local n="$2"
    have "$n" || return 0
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "${WALL[$n]}" "$(eps "${WALL[$n]}")" "${CPU[$n]}" "$(mb "${RSS[$n]}")" "$3"
}
{
    echo "## Results ($EVENTS events, $(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "Machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GB RAM, Linux $(uname -r)."
    if want backfill || want sinks || want baselines; then
        echo
        echo "### Backfill (HTTP from the local simulator to the sink)"
        echo
        echo "| run | wall s | events/s | CPU s | peak RSS MB | vs jq (pages) / vs curl\\|jq / vs reference |"
        echo "|---|---|---|---|---|---|"
        for fmt in json ecs cef; do
            row "agent once, file $fmt" "agent-$fmt" "$(ratio jq-pages "agent-$fmt")x / $(ratio curl-jq "agent-$fmt")x / $(ratio reference "agent-$fmt")"
        done
        row "agent once, $SINK_COUNT sinks at once" agent-4sinks "$(ratio agent-4sinks agent-json)x the time of file json"
        row "agent once, syslog TCP alone (cef)" agent-syslog "$(ratio agent-syslog agent-json)x the time of file json; rsyslogd used ${PEER_CPU[agent-syslog]:-?} CPU s"
        row "agent once, Kafka alone (json)" agent-kafka "$(ratio agent-kafka agent-json)x the time of file json; tansu used ${PEER_CPU[agent-kafka]:-?} CPU s"
        row "jq over the dumped pages (one jq process)" jq-pages "baseline"
        row "curl \\| jq per page, following cursors" curl-jq "$(ratio curl-jq jq-pages)x the time of jq (pages)"
        row "bare reference: serde_json parse + write (HTTP)" reference "practical limit"
    fi
    if want preview; then
        echo
        echo "### Mapping alone: \`preview --format F events.ndjson\` vs jq on the same file"
        echo
        echo "| run | wall s | events/s | CPU s | peak RSS MB | vs jq |"
        echo "|---|---|---|---|---|---|"
        row "jq (documented row, NDJSON)" jq-file "baseline"
        for fmt in json ecs cef; do
            row "preview $fmt" "preview-$fmt" "$(ratio jq-file "preview-$fmt")x"
        done
    fi
    if want export; then
        echo
        echo "### Every shape: \`preview\` of one JSON array ($ARRAY_MB MB) and of NDJSON, \`export\` from the simulator, vs jq's documented CSV row"
        echo
        echo "| run | wall s | events/s | CPU s | peak RSS MB | vs jq (same shape; export: vs jq on the array) |"
        echo "|---|---|---|---|---|---|"
        row "jq, JSON array (\`.[] | row\`)" jq-array "baseline"
        row "jq, NDJSON" jq-ndjson "baseline"
        for fmt in csv json ecs cef; do
            row "preview $fmt, JSON array" "preview-array-$fmt" "$(ratio jq-array "preview-array-$fmt")x"
            row "preview $fmt, NDJSON" "preview-ndjson-$fmt" "$(ratio jq-ndjson "preview-ndjson-$fmt")x"
            row "export $fmt (HTTP from the simulator)" "export-$fmt" "$(ratio jq-array "export-$fmt")x"
        done
    fi
    if want idle; then
        echo
        echo "### Idle: \`run\`, 10 organizations x $SINK_COUNT sinks, nothing new, ${IDLE_SECONDS} s"
        echo
        echo "| RSS MB | of which anonymous (heap, stacks) MB | CPU % |"
        echo "|---|---|---|"
        echo "| $(mb "$IDLE_RSS") | $(mb "$IDLE_ANON") | $IDLE_CPU_PCT |"
    fi
    if want scale; then
        echo
        echo "### Scale: $SCALE_ORGS organizations x 4 events, one agent, max_concurrent_requests 8"
        echo
        echo "| pass wall s | requests per organization (pass) | pass peak RSS MB | most requests at once (server) | idle CPU % | idle RSS MB (peak) | requests per organization per idle poll |"
        echo "|---|---|---|---|---|---|---|"
        echo "| ${WALL[scale-pass]} | $SCALE_REQ_PER_ORG | $(mb "${RSS[scale-pass]}") | $SCALE_MAX_IN_FLIGHT | $SCALE_IDLE_CPU | $(mb "$SCALE_IDLE_RSS") ($(mb "$SCALE_IDLE_HWM")) | $SCALE_IDLE_REQ |"
    fi
    if want isolation; then
        echo
        echo "### Isolation: a file sink beside a webhook that accepts and never answers (poll_interval 1 s, ${IDLE_SECONDS} s)"
        echo
        echo "| events seen | worst latency s | median latency s | target |"
        echo "|---|---|---|---|"
        echo "| $ISO_N | $ISO_MAX | $ISO_P50 | <= poll_interval + 1 s = 2 s |"
    fi
    echo
    echo "Wall/CPU/peak RSS by GNU time (CPU includes children: the curl|jq loop's curls and jqs)."
    echo "The agent and the reference fetch over HTTP from the simulator (another process on this"
    echo "machine); jq (pages) reads the same pages from files, so its figure excludes HTTP."
    for n in "${NOTES[@]}"; do echo "Note: $n."; done
} >"$WORK/table.md"
cat "$WORK/table.md"
if [ "$FULL" = 1 ]; then cp "$WORK/table.md" "$ROOT/bench/RESULTS.md"; else echo "(partial run: bench/RESULTS.md left as it was)" >&2; fi
