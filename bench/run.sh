#!/usr/bin/env bash
# bench/run.sh (`make bench`): measure the durable bus and POST /v1/dossiers against
# baselines taken in the same run on the same PostgreSQL cluster, and write
# bench/RESULTS.md.
#
#   1. baselines: pgbench, one single-row INSERT per transaction, 1 and 8 clients;
#      bench/zmq_raw.c, bare libzmq DEALER->ROUTER with an answer per message, and
#      one-way PUSH->PULL, over TCP loopback
#   2. the bus across one hop: bus-peer intake -> bus-peer routing, batched
#      (MOTCUA_BUS_BATCH=256) and not (MOTCUA_BUS_BATCH=1), each on a fresh database;
#      and batched across the CURVE link between provinces (mc_bus_link on both)
#   3. POST /v1/dossiers on motcua-intake (with motcua-routing consuming) under wrk,
#      without and with an Idempotency-Key per request, at two connection counts
#
# Everything runs on loopback against a private cluster made by mk/pg.sh under
# build/bench/ (fsync and synchronous_commit on), destroyed at the end. Every process
# started here is stopped on exit, whatever happens.
#
# Knobs (environment): BENCH_PGBENCH_SECONDS (10), BENCH_WRK_SECONDS (20),
# BENCH_WRK_CONNECTIONS ("8 32"), BENCH_BUS_STREAMS (200), BENCH_BUS_PER_STREAM (100),
# BENCH_BUS_PER_STREAM_SMALL (10), BENCH_BUS_CHUNK (1000), BENCH_BUS_WINDOW (30 s: how long
# the unbatched run with the big backlog is measured; it would take minutes to drain),
# BENCH_BUS_TIMEOUT (120 s), BENCH_WRK_MODES ("plain idem": the order of the wrk runs).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="${BENCH_BIN:-$ROOT/build/release/bin}"
WORK="$ROOT/build/bench"
PGDIR="$WORK/pg"
LOGS="$WORK/logs"
RESULTS="$ROOT/bench/RESULTS.md"

PGBENCH_SECONDS="${BENCH_PGBENCH_SECONDS:-10}"
WRK_SECONDS="${BENCH_WRK_SECONDS:-20}"
WRK_CONNECTIONS="${BENCH_WRK_CONNECTIONS:-8 32}"
BUS_STREAMS="${BENCH_BUS_STREAMS:-200}"
BUS_PER_STREAM="${BENCH_BUS_PER_STREAM:-100}"
BUS_PER_STREAM_SMALL="${BENCH_BUS_PER_STREAM_SMALL:-10}"
BUS_WINDOW="${BENCH_BUS_WINDOW:-30}"
BUS_CHUNK="${BENCH_BUS_CHUNK:-1000}"
BUS_TIMEOUT="${BENCH_BUS_TIMEOUT:-120}"

# Our services read MOTCUA_*: nothing from the caller's environment may leak in, except
# what mk/pg.sh documents for itself.
while read -r v; do
    case "$v" in MOTCUA_PG_*) ;; *) unset "$v" ;; esac
done < <(compgen -e | grep '^MOTCUA_' || true)

BENCH_START=$(date +%s)
say() { printf '[bench %3ds] %s\n' "$(($(date +%s) - BENCH_START))" "$*"; }
die() {
    printf 'bench: error: %s\n' "$*" >&2
    exit 1
}

# ---- cleanup -------------------------------------------------------------------------
PIDS=()
PG_STARTED=0
stop_pid() { # PID: TERM, then KILL after 10 s
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}
forget_pid() { # PID: it has ended and been waited for; never signal that number again
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ "$PG_STARTED" -eq 1 ]; then
        cp "$PGDIR/postgresql.log" "$LOGS/postgresql.log" 2>/dev/null || true
        bash mk/pg.sh destroy "$PGDIR" 2>/dev/null || true
    fi
    [ "$rc" -ne 0 ] && printf 'bench: failed (exit %s); logs in %s\n' "$rc" "$LOGS" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- prerequisites -------------------------------------------------------------------
for b in motcua-intake motcua-routing bus-peer; do
    [ -x "$BIN/$b" ] || die "$BIN/$b missing; run make first"
done
if ! command -v wrk >/dev/null || ! command -v pgbench >/dev/null || ! command -v curl >/dev/null; then
    say "installing missing tools (mk/deps.sh)"
    sh mk/deps.sh
fi
for t in wrk pgbench psql curl python3 pkg-config cc; do
    command -v "$t" >/dev/null || die "$t not found (sh mk/deps.sh installs it)"
done

mkdir -p "$WORK"
rm -rf "$LOGS"
mkdir -p "$LOGS"

# N free loopback ports, all distinct (held open together while choosing).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }

# ---- machine -------------------------------------------------------------------------
CPU_MODEL="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
CORES="$(nproc)"
MEM_GB="$(awk '/^MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)"
KERNEL="$(uname -sr)"
ZMQ_VERSION="$(pkg-config --modversion libzmq)"
STARTED_AT="$(date -u '+%Y-%m-%d %H:%M UTC')"
LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- zmq_raw ---------------------------------------------------------------------------
say "building build/bench/zmq_raw"
cc -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -o "$WORK/zmq_raw" bench/zmq_raw.c \
    $(pkg-config --cflags --libs libzmq) -lpthread

# ---- PostgreSQL ------------------------------------------------------------------------
bash mk/pg.sh destroy "$PGDIR" 2>/dev/null || true # leftovers of an interrupted run
read -r PG_PORT < <(free_ports 1)
say "starting PostgreSQL on 127.0.0.1:$PG_PORT (mk/pg.sh, $PGDIR)"
PG_STARTED=1
PG_URL="$(bash mk/pg.sh start "$PGDIR" "$PG_PORT" 2>"$LOGS/pg.sh.log")" ||
    die "mk/pg.sh start failed: $(cat "$LOGS/pg.sh.log")"
PG_BASE="${PG_URL%/*}"
psql_q() { # DB SQL: one value or rows, unaligned
    psql -X -qtA -v ON_ERROR_STOP=1 "$PG_BASE/$1" -c "$2"
}
PG_VERSION="$(psql_q motcua 'SHOW server_version' | sed 's/ .*//')"
PG_SETTINGS="$(psql_q motcua "SELECT string_agg(name || '=' || current_setting(name), ', ' ORDER BY name) FROM pg_settings
    WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'wal_sync_method', 'shared_buffers')")"
say "PostgreSQL $PG_VERSION: $PG_SETTINGS"

# Cluster-wide WAL counters and one database's commits, as "commits wal_records
# wal_bytes wal_syncs". Backends report at exit, so read after the clients are gone.
stats_snapshot() { # DB
    psql_q "$1" "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
        wal_records, wal_bytes, wal_sync FROM pg_stat_wal" | tr '|' ' '
}
# Each measurement starts right after a checkpoint, so that none is likely to start in the
# middle of one (they make every first write of a page a full-page image in the WAL).
checkpoint() { psql_q motcua "CHECKPOINT" >/dev/null; }
checkpoints_done() { psql_q motcua "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"; }
# Commits, WAL records, WAL bytes and WAL syncs per unit between two snapshots.
stats_per() { # "BEFORE" "AFTER" UNITS EXTRA_COMMITS -> "commits records bytes syncs" per unit
    python3 - "$1" "$2" "$3" "$4" <<'EOF'
import sys
b = [float(x) for x in sys.argv[1].split()]
a = [float(x) for x in sys.argv[2].split()]
n = float(sys.argv[3]); extra = float(sys.argv[4])
d = [y - x for x, y in zip(b, a)]
d[0] -= extra
print("%.2f %.1f %.0f %.2f" % (d[0] / n, d[1] / n, d[2] / n, d[3] / n))
EOF
}

# ---- 1a. pgbench: single-row INSERT per transaction ------------------------------------
psql_q motcua "CREATE DATABASE bench_pgbench" >/dev/null
psql_q bench_pgbench "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, payload text NOT NULL,
    at timestamptz NOT NULL DEFAULT now())" >/dev/null
PAYLOAD="$(printf 'x%.0s' $(seq 1 200))"
printf 'INSERT INTO bench_insert (payload) VALUES (%s);\n' "'$PAYLOAD'" >"$WORK/insert.sql"
declare -A PGB_TPS PGB_PER
pgbench_run() { # KEY CLIENTS: PGB_TPS[KEY], PGB_PER[KEY]
    local key="$1" c="$2" before after tps txns log="$LOGS/pgbench-$1.log"
    say "pgbench: one INSERT per transaction, $c client(s), ${PGBENCH_SECONDS}s"
    checkpoint
    before="$(stats_snapshot bench_pgbench)"
    pgbench -n -M prepared -h 127.0.0.1 -p "$PG_PORT" -U motcua -c "$c" -j "$((c < 2 ? 1 : 2))" \
        -T "$PGBENCH_SECONDS" -f "$WORK/insert.sql" bench_pgbench >"$log" 2>&1 ||
        die "pgbench failed: $(tail -5 "$log")"
    sleep 0.5
    after="$(stats_snapshot bench_pgbench)"
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$log" | tail -n1)"
    txns="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")"
    [ -n "$tps" ] && [ -n "$txns" ] || die "could not read pgbench output: $log"
    PGB_TPS[$key]="$(printf '%.0f' "$tps")"
    PGB_PER[$key]="$(stats_per "$before" "$after" "$txns" 1)"
    say "  -> ${PGB_TPS[$key]} TPS (commits/WAL records/WAL bytes/WAL syncs per txn: ${PGB_PER[$key]})"
}
pgbench_run 1 1
pgbench_run 8 8

# ---- 1b. raw ZeroMQ ----------------------------------------------------------------------
say "zmq_raw: DEALER->ROUTER with an answer per message, PUSH->PULL, 200-byte bodies"
"$WORK/zmq_raw" 500000 200 "$BUS_STREAMS" >"$LOGS/zmq_raw.log" || die "zmq_raw failed"
zmq_rate() { sed -n "s/^mode=$1 .* rate=\([0-9]*\)$/\1/p" "$LOGS/zmq_raw.log"; }
ZMQ_W1="$(zmq_rate dealer_router_w1)"
ZMQ_WN="$(zmq_rate "dealer_router_w$BUS_STREAMS")"
ZMQ_PUSH="$(zmq_rate push_pull)"
say "  -> lock-step $ZMQ_W1 msg/s, window $BUS_STREAMS: $ZMQ_WN msg/s, push/pull $ZMQ_PUSH msg/s"

# ---- services ------------------------------------------------------------------------
# The environment of tests/system/harness.py's suite_env: every service on free ports,
# all pointing at each other, one database.
SUITE_ENV=()
suite_env() { # DATABASE_URL [extra VAR=value...]
    local url="$1" ports i=0 name up
    shift
    read -r -a ports < <(free_ports 12)
    SUITE_ENV=("MOTCUA_DATABASE_URL=$url" "MOTCUA_HTTP_HOST=127.0.0.1" "MOTCUA_LOG_LEVEL=info"
        "MOTCUA_DATA_DIR=$ROOT/deploy/data" "$@")
    for name in intake routing interconnect payment postal notify; do
        up="${name^^}"
        SUITE_ENV+=("MOTCUA_${up}_HTTP_PORT=${ports[i]}"
            "MOTCUA_${up}_BUS=tcp://127.0.0.1:${ports[i + 1]}"
            "MOTCUA_${up}_BUS_BIND=tcp://127.0.0.1:${ports[i + 1]}")
        i=$((i + 2))
    done
}
http_port() { # SERVICE: from SUITE_ENV
    local kv
    for kv in "${SUITE_ENV[@]}"; do
        case "$kv" in "MOTCUA_${1^^}_HTTP_PORT="*) echo "${kv#*=}" ;; esac
    done
}

LAST_PID=""
EXTRA_ENV=() # set around a start_service for one process only
start_service() { # LOGNAME SERVICE BINARY [ARGS...]: start in SUITE_ENV, wait for /readyz
    local log="$LOGS/$1.log" port bin="$3" i
    port="$(http_port "$2")"
    shift 3
    env "${SUITE_ENV[@]}" "${EXTRA_ENV[@]}" "$bin" "$@" >>"$log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    for ((i = 0; i < 600; i++)); do
        kill -0 "$LAST_PID" 2>/dev/null || die "$bin $* exited during start-up; see $log: $(tail -5 "$log")"
        curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$port/readyz" && return 0
        sleep 0.1
    done
    die "$bin $* not ready after 60 s; see $log"
}
metric() { # PORT NAME: a gauge's value from /metrics
    curl -fs --max-time 5 "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 {print $2; exit}'
}

# ---- 2. the bus across one hop -----------------------------------------------------------
# Each run: a fresh database, bus-peer routing (receiver) and bus-peer intake (sender),
# one /probe/send call writing STREAMS x PER envelopes, then wait until routing.probe_log
# holds them all (or, for a windowed run, until WINDOW seconds after the call started).
declare -A BUS_BATCH BUS_TOTAL BUS_WRITE_S BUS_WRITE_RATE BUS_E2E_S BUS_RATE BUS_TAIL_S BUS_PER \
    BUS_SENT BUS_ORDER BUS_DONE BUS_WINDOWED BUS_CLAIM_MS BUS_CLAIM_PENDING BUS_GAP_US
BUS_LABELS=()
# The relay's claim (common/bus.c, sql_claim), read-only part: which heads are due.
CLAIM_SELECT="WITH heads AS (SELECT DISTINCT ON (destination, dossier_code) seq, lease_until
  FROM intake.outbox WHERE delivered_at IS NULL ORDER BY destination, dossier_code, seq)
SELECT seq FROM heads WHERE lease_until IS NULL OR lease_until <= now() ORDER BY seq LIMIT 1"
# The link between provinces: both bus-peers open one (BUS_PEER_LINK_BIND, key pairs made
# by motcuactl curve keygen), and the sender sends to the receiver's province name.
CURVE_DIR="$WORK/curve"
curve_key() { # NAME: make the key pair once; prints its public key
    [ -f "$CURVE_DIR/${1}_secret" ] ||
        "$BIN/motcuactl" curve keygen "$1" "$CURVE_DIR/$1" >/dev/null || die "curve keygen $1 failed"
    sed -n 's/^ *public-key = "\(.*\)"$/\1/p' "$CURVE_DIR/${1}_secret"
}
bus_run() { # LABEL BATCH PER_STREAM WINDOW (0: until all are delivered) [curve]
    local label="$1" batch="$2" per="$3" window="$4" curve="${5:-}" db total answer t0 t1 tend
    local deadline limit send_pid recv_pid intake_port before after count polls=0 to=routing
    local recv_env=() send_env=() lr ls
    db="bench_bus_${label//-/_}"
    total=$((BUS_STREAMS * per))
    BUS_LABELS+=("$label")
    BUS_BATCH[$label]=$batch
    BUS_TOTAL[$label]=$total
    BUS_WINDOWED[$label]=$window
    psql_q motcua "CREATE DATABASE $db" >/dev/null
    suite_env "$PG_BASE/$db" "MOTCUA_BUS_BATCH=$batch"
    intake_port="$(http_port intake)"
    if [ -n "$curve" ]; then
        mkdir -p "$CURVE_DIR"
        read -r lr ls < <(free_ports 2)
        recv_env=("BUS_PEER_LINK_BIND=tcp://127.0.0.1:$lr" "BUS_PEER_CERT=$CURVE_DIR/H99_secret"
            "BUS_PEER_PEER=H98" "BUS_PEER_PEER_ENDPOINT=tcp://127.0.0.1:$ls"
            "BUS_PEER_PEER_KEY=$(curve_key H98)")
        send_env=("BUS_PEER_LINK_BIND=tcp://127.0.0.1:$ls" "BUS_PEER_CERT=$CURVE_DIR/H98_secret"
            "BUS_PEER_PEER=H99" "BUS_PEER_PEER_ENDPOINT=tcp://127.0.0.1:$lr"
            "BUS_PEER_PEER_KEY=$(curve_key H99)")
        to=H99
    fi
    say "bus $label (MOTCUA_BUS_BATCH=$batch${curve:+, over the CURVE link}): starting bus-peer routing (receiver) and bus-peer intake (sender)"
    EXTRA_ENV=("${recv_env[@]}")
    start_service "bus-$label-routing" routing "$BIN/bus-peer" routing
    recv_pid=$LAST_PID
    EXTRA_ENV=("${send_env[@]}")
    start_service "bus-$label-intake" intake "$BIN/bus-peer" intake
    send_pid=$LAST_PID
    EXTRA_ENV=()
    checkpoint
    before="$(stats_snapshot "$db")"
    if [ "$window" -gt 0 ]; then
        say "bus $label: sending $total envelopes ($BUS_STREAMS streams x $per, $BUS_CHUNK per outbox transaction); measuring ${window}s"
    else
        say "bus $label: sending $total envelopes ($BUS_STREAMS streams x $per, $BUS_CHUNK per outbox transaction)"
    fi
    t0="$(now)"
    answer="$(curl -fsS --max-time "$BUS_TIMEOUT" -X POST \
        "http://127.0.0.1:$intake_port/probe/send?to=$to&streams=$BUS_STREAMS&per_stream=$per&chunk=$BUS_CHUNK")" ||
        die "probe/send failed: $answer"
    t1="$(now)"
    BUS_WRITE_S[$label]="$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['seconds'])" "$answer")"
    limit=$([ "$window" -gt 0 ] && echo "$window" || echo "$BUS_TIMEOUT")
    deadline="$(calc "$t0 + $limit")"
    while :; do
        count="$(psql_q "$db" "SELECT count(*) FROM routing.probe_log")"
        polls=$((polls + 1))
        [ "$count" -ge "$total" ] && break
        if [ "$(calc "int($(now) >= $deadline)")" = 1 ]; then
            tend="$(now)"
            count="$(psql_q "$db" "SELECT count(*) FROM routing.probe_log")"
            polls=$((polls + 1))
            [ "$window" -eq 0 ] && say "bus $label: timed out after ${BUS_TIMEOUT}s with $count of $total delivered"
            break
        fi
        sleep 0.2
    done
    if [ "$count" -ge "$total" ]; then
        # The last delivery's own timestamp (clock_timestamp() in the receiver's insert),
        # not the poll that saw it: the same clock as date(1) on this machine.
        tend="$(psql_q "$db" "SELECT extract(epoch FROM max(at)) FROM routing.probe_log")"
        polls=$((polls + 1))
    fi
    BUS_DONE[$label]="$count"
    BUS_ORDER[$label]="$(psql_q "$db" "SELECT count(*) FILTER (WHERE NOT in_order) FROM routing.probe_log")"
    # The receiver's pace inside its transactions: the median gap between consecutive
    # probe_log inserts (clock_timestamp() of each), in microseconds.
    BUS_GAP_US[$label]="$(psql_q "$db" "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY gap))
        FROM (SELECT extract(epoch FROM at - lag(at) OVER (ORDER BY pos)) * 1e6 AS gap
              FROM routing.probe_log) g WHERE gap IS NOT NULL")"
    polls=$((polls + 1))
    BUS_SENT[$label]="$(metric "$intake_port" motcua_bus_sent || echo '?')"
    stop_pid "$send_pid"
    stop_pid "$recv_pid"
    sleep 0.5
    after="$(stats_snapshot "$db")"
    BUS_E2E_S[$label]="$(calc "round($tend - $t0, 2)")"
    BUS_TAIL_S[$label]="$(calc "round(max(0, $tend - $t1), 2)")"
    BUS_RATE[$label]="$(calc "round($count / ($tend - $t0))")"
    BUS_WRITE_RATE[$label]="$(calc "round($total / ${BUS_WRITE_S[$label]})")"
    # Our polls are read-only commits in the same database: leave them out (+2 for the
    # order query and the first snapshot).
    BUS_PER[$label]="$(stats_per "$before" "$after" "$count" "$((polls + 2))")"
    # What one relay claim costs with the backlog left (all of it, for a run that ended).
    BUS_CLAIM_PENDING[$label]="$(psql_q "$db" "SELECT count(*) FROM intake.outbox WHERE delivered_at IS NULL")"
    if [ "${BUS_CLAIM_PENDING[$label]}" -gt 0 ]; then
        BUS_CLAIM_MS[$label]="$(psql_q "$db" "EXPLAIN ANALYZE $CLAIM_SELECT" >/dev/null
            psql_q "$db" "EXPLAIN ANALYZE $CLAIM_SELECT" | sed -n 's/^Execution Time: \([0-9.]*\) ms/\1/p')"
    fi
    if [ "$window" -gt 0 ]; then
        say "  -> $count of $total delivered in the first ${BUS_E2E_S[$label]}s: ${BUS_RATE[$label]} envelopes/s;" \
            "one relay claim with ${BUS_CLAIM_PENDING[$label]} pending takes ${BUS_CLAIM_MS[$label]:-?} ms"
    else
        say "  -> $count/$total delivered in ${BUS_E2E_S[$label]}s from the send call's start:" \
            "${BUS_RATE[$label]} envelopes/s"
    fi
    say "     outbox write ${BUS_WRITE_S[$label]}s (${BUS_WRITE_RATE[$label]}/s); relay sent ${BUS_SENT[$label]};" \
        "out of order ${BUS_ORDER[$label]}; receiver median ${BUS_GAP_US[$label]} us between inserts;" \
        "per envelope commits/WAL records/WAL bytes/WAL syncs ${BUS_PER[$label]}"
}
BIG="$((BUS_STREAMS * BUS_PER_STREAM))"
SMALL="$((BUS_STREAMS * BUS_PER_STREAM_SMALL))"
bus_run "batched-$BIG" 256 "$BUS_PER_STREAM" 0
bus_run "unbatched-$BIG" 1 "$BUS_PER_STREAM" "$BUS_WINDOW"
bus_run "batched-$SMALL" 256 "$BUS_PER_STREAM_SMALL" 0
bus_run "unbatched-$SMALL" 1 "$BUS_PER_STREAM_SMALL" 0
bus_run "curve_batched-$BIG" 256 "$BUS_PER_STREAM" 0 curve
bus_run "curve_batched-$SMALL" 256 "$BUS_PER_STREAM_SMALL" 0 curve

# ---- 3. POST /v1/dossiers under wrk ----------------------------------------------------
psql_q motcua "CREATE DATABASE bench_intake" >/dev/null
suite_env "$PG_BASE/bench_intake"
say "intake: starting motcua-routing and motcua-intake"
start_service intake-routing routing "$BIN/motcua-routing"
ROUTING_PID=$LAST_PID
start_service intake-intake intake "$BIN/motcua-intake"
INTAKE_PID=$LAST_PID
INTAKE_URL="http://127.0.0.1:$(http_port intake)/v1/dossiers"
# The submission every request posts: a level-4 procedure of the catalog, online, no fee
# (so no payment step), with the documents the catalog requires.
export BENCH_DOSSIER_BODY="$WORK/dossier.json"
PROCEDURE="$(python3 - "$ROOT/deploy/data/catalog/procedures.json" "$BENCH_DOSSIER_BODY" <<'EOF'
import json, sys
procs = json.load(open(sys.argv[1], encoding="utf-8"))["procedures"]
fit = [p for p in procs if p.get("level") == 4 and not p.get("fee")
       and "counter" in p.get("return_methods", [])]
p = next((p for p in fit if p["code"] == "1.001193"), fit[0] if fit else None)
if p is None:
    sys.exit("no level-4, fee-free procedure in the catalog")
body = {"procedure": p["code"], "channel": "online",
        "applicant": {"name": "Nguyễn Văn A", "id_number": "001203004567", "phone": "0912345678"},
        "documents": [{"kind": d["kind"], "name": d["name"]} for d in p.get("documents", [])]}
with open(sys.argv[2], "w", encoding="utf-8") as f:
    json.dump(body, f, ensure_ascii=False, separators=(",", ":"))
print("%s (%s)" % (p["code"], p["name"]))
EOF
)" || die "could not build a submission from deploy/data/catalog/procedures.json"
say "intake: every request submits procedure $PROCEDURE"
# Submissions need an API key: the provincial portal's (scope citizen_portal).
BENCH_API_KEY="$(MOTCUA_DATABASE_URL="$PG_BASE/bench_intake" "$BIN/motcuactl" keys create \
    --name bench-portal --scopes citizen_portal --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')" || die "motcuactl keys create failed"
export BENCH_API_KEY
probe="$(curl -sS -o "$LOGS/first-submission.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -H "Authorization: Bearer $BENCH_API_KEY" \
    --data-binary "@$BENCH_DOSSIER_BODY" "$INTAKE_URL")"
[ "$probe" = "201" ] ||
    die "a single POST /v1/dossiers answered $probe, not 201: $(cat "$LOGS/first-submission.json")"

# What the services' busy database sessions (those inside a transaction) are doing,
# sampled every 100 ms during a wrk run by one backend (pg_stat_clear_snapshot makes each
# sample fresh inside the loop), and how often an autovacuum worker was at work in the
# database. One line: shares in percent.
wait_sampler() { # SECONDS
    psql -X -qtA -v ON_ERROR_STOP=1 "$PG_BASE/bench_intake" <<SQL
CREATE TEMP TABLE samples (tick int, event text);
DO \$\$ BEGIN
  FOR i IN 1..($1 * 10) LOOP
    PERFORM pg_stat_clear_snapshot();
    INSERT INTO samples SELECT i, CASE WHEN backend_type = 'autovacuum worker' THEN 'autovacuum'
        WHEN state = 'active' THEN coalesce(wait_event_type || '/' || wait_event, 'CPU')
        ELSE state END
      FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
        AND (backend_type = 'autovacuum worker'
             OR (backend_type = 'client backend' AND state <> 'idle'));
    PERFORM pg_sleep(0.1);
  END LOOP;
END \$\$;
WITH s AS (SELECT event FROM samples WHERE event <> 'autovacuum'),
     n AS (SELECT greatest(count(*), 1) AS n FROM s)
SELECT format('lock=%s cpu=%s idletx=%s walsync=%s other=%s autovacuum=%s',
    round(100.0 * count(*) FILTER (WHERE event = 'Lock/transactionid') / n),
    round(100.0 * count(*) FILTER (WHERE event = 'CPU') / n),
    round(100.0 * count(*) FILTER (WHERE event = 'idle in transaction') / n),
    round(100.0 * count(*) FILTER (WHERE event = 'IO/WALSync') / n),
    round(100.0 * count(*) FILTER (WHERE event NOT IN ('Lock/transactionid', 'CPU',
        'idle in transaction', 'IO/WALSync')) / n),
    (SELECT round(100.0 * count(DISTINCT tick) / ($1 * 10)) FROM samples WHERE event = 'autovacuum'))
  FROM s, n GROUP BY n;
SELECT round(100.0 * count(*) / sum(count(*)) OVER (), 1) || '% ' || event FROM samples
  WHERE event <> 'autovacuum' GROUP BY event ORDER BY count(*) DESC LIMIT 8;
SQL
}

declare -A WRK
NONCE="$(date +%s)-$$"
INTAKE_BEFORE="$(stats_snapshot bench_intake)"
LAST_C="${WRK_CONNECTIONS##* }"
for mode in ${BENCH_WRK_MODES:-plain idem}; do
    for c in $WRK_CONNECTIONS; do
        key="$mode-$c"
        say "wrk: POST /v1/dossiers, $c connections, ${WRK_SECONDS}s, $([ "$mode" = idem ] && echo 'unique Idempotency-Key per request' || echo 'no Idempotency-Key')"
        checkpoint
        ckpt0="$(checkpoints_done)"
        wait_sampler "$WRK_SECONDS" >"$LOGS/waits-$key.txt" 2>&1 &
        sampler=$!
        PIDS+=("$sampler")
        wrk -t 2 -c "$c" -d "${WRK_SECONDS}s" --latency --timeout 10s -s bench/post_dossier.lua \
            "$INTAKE_URL" -- "$NONCE-$c" "$mode" >"$LOGS/wrk-$key.log" 2>&1 ||
            die "wrk failed: $(tail -5 "$LOGS/wrk-$key.log")"
        wait "$sampler" || say "  (wait-event sampler failed: $(tail -2 "$LOGS/waits-$key.txt"))"
        forget_pid "$sampler"
        for w in lock cpu idletx walsync other autovacuum; do
            WRK[$key.$w]="$(head -n1 "$LOGS/waits-$key.txt" | tr ' ' '\n' | sed -n "s/^$w=//p")"
        done
        WRK[$key.ckpt]="$(($(checkpoints_done) - ckpt0))"
        line="$(grep '^BENCH ' "$LOGS/wrk-$key.log")" || die "no summary from wrk: $LOGS/wrk-$key.log"
        eval "$(sed 's/^BENCH //; s/\([a-z0-9_]*\)=/w_\1=/g' <<<"$line")"
        WRK[$key.rps]="$(calc "round($w_requests / ($w_duration_us / 1e6))")"
        WRK[$key.non2xx]="$w_non2xx"
        WRK[$key.sockerr]="$((w_connect + w_read + w_write + w_timeout))"
        WRK[$key.p50]="$(calc "round($w_p50 / 1000, 1)")"
        WRK[$key.p90]="$(calc "round($w_p90 / 1000, 1)")"
        WRK[$key.p99]="$(calc "round($w_p99 / 1000, 1)")"
        WRK[$key.max]="$(calc "round($w_max / 1000, 1)")"
        say "  -> ${WRK[$key.rps]} req/s, p50 ${WRK[$key.p50]} ms, p90 ${WRK[$key.p90]} ms, p99 ${WRK[$key.p99]} ms;" \
            "non-2xx ${WRK[$key.non2xx]}, socket errors ${WRK[$key.sockerr]}, checkpoints during the run ${WRK[$key.ckpt]}"
        say "     busy database sessions: $(head -n1 "$LOGS/waits-$key.txt") (% of samples)"
    done
done

# Every stored dossier must reach routing over the bus: wait for the backlog to drain.
say "intake: waiting for routing to open a case for every stored dossier"
DOSSIERS="$(psql_q bench_intake "SELECT count(*) FROM intake.dossiers")"
t0="$(now)"
deadline=$(($(date +%s) + 60))
while :; do
    CASES="$(psql_q bench_intake "SELECT count(*) FROM routing.cases")"
    [ "$CASES" -ge "$DOSSIERS" ] && break
    [ "$(date +%s)" -ge "$deadline" ] && break
    sleep 0.2
done
DRAIN_S="$(calc "round($(now) - $t0, 1)")"
IDEM_ROWS="$(psql_q bench_intake "SELECT count(*) FROM intake.idempotency")"
stop_pid "$INTAKE_PID"
stop_pid "$ROUTING_PID"
sleep 0.5
INTAKE_PER="$(stats_per "$INTAKE_BEFORE" "$(stats_snapshot bench_intake)" "$DOSSIERS" 0)"
say "  -> $DOSSIERS dossiers stored, $CASES cases opened by routing (drained ${DRAIN_S}s after the last wrk run);" \
    "per dossier (both services) commits/WAL records/WAL bytes/WAL syncs $INTAKE_PER"

# The same baseline again: how much did the machine drift while we measured?
say "stability check: pgbench with 1 client again"
pgbench_run 1-end 1
LOADAVG_END="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 4. RESULTS.md --------------------------------------------------------------------
say "writing bench/RESULTS.md"
pct() { calc "round(100.0 * $1 / $2, 1)"; }
field() { awk -v i="$2" '{print $i}' <<<"$1"; }
B_BIG="batched-$BIG" U_BIG="unbatched-$BIG" B_SMALL="batched-$SMALL" U_SMALL="unbatched-$SMALL"
C_BIG="curve_batched-$BIG" C_SMALL="curve_batched-$SMALL"
run_name() { # LABEL: what the tables call the run
    case "$1" in curve_batched-*) echo "batched over the CURVE link" ;; *) echo "${1%%-*}" ;; esac
}
{
    cat <<EOF
# motcua benchmark results

Written by \`make bench\` (bench/run.sh) on $STARTED_AT; the run took $(($(date +%s) - BENCH_START)) s.
One run on a small shared machine, so read the figures with their noise: pgbench with 1
client gave ${PGB_TPS[1]} TPS at the start and ${PGB_TPS[1-end]} TPS at the end of the run
($(calc "format(100.0 * (${PGB_TPS[1-end]} - ${PGB_TPS[1]}) / ${PGB_TPS[1]}, '+.1f')") %); load average $LOADAVG at the start, $LOADAVG_END at the end
(other work on the machine counts too). Differences of less than about 20 % between two
rows below are not worth reading into.

## Machine

| | |
|---|---|
| CPU | $CPU_MODEL, $CORES cores |
| memory | $MEM_GB GiB |
| kernel | $KERNEL |
| PostgreSQL | $PG_VERSION, private cluster from mk/pg.sh: $PG_SETTINGS |
| libzmq | $ZMQ_VERSION |

PostgreSQL, the services and the load generators share these $CORES cores, over loopback.

## Baselines (same cluster, same run)

| baseline | result | WAL syncs per commit |
|---|---|---|
| pgbench, one 200-byte INSERT per transaction, 1 client, ${PGBENCH_SECONDS} s | **${PGB_TPS[1]} TPS** | $(field "${PGB_PER[1]}" 4) |
| pgbench, one 200-byte INSERT per transaction, 8 clients, ${PGBENCH_SECONDS} s | **${PGB_TPS[8]} TPS** | $(field "${PGB_PER[8]}" 4) |
| ZeroMQ DEALER→ROUTER over TCP, 200-byte body, an answer per message, 1 in flight | **$ZMQ_W1 msg/s** | |
| ZeroMQ DEALER→ROUTER over TCP, 200-byte body, an answer per message, $BUS_STREAMS in flight | **$ZMQ_WN msg/s** | |
| ZeroMQ PUSH→PULL over TCP, 200-byte body, one way | **$ZMQ_PUSH msg/s** | |

## The durable bus across one hop (bus-peer intake → bus-peer routing)

One \`POST /probe/send\` writes the envelopes into the sender's outbox ($BUS_CHUNK per
transaction, $BUS_STREAMS streams, i.e. dossiers, interleaved); the relay delivers them and the
receiver inserts each into \`routing.probe_log\` in its inbox transaction. **Rate =
envelopes delivered ÷ time from the start of the send call** to the receiver's timestamp on
the last one (it includes writing the outbox; the relay starts on the first chunk's
commit). Each run has a fresh database. "Batched" is \`MOTCUA_BUS_BATCH=256\` on both
processes, "unbatched" \`MOTCUA_BUS_BATCH=1\`.

| run | envelopes delivered | time | **envelopes/s** | vs pgbench 1 client | vs pgbench 8 clients | vs ZeroMQ, $BUS_STREAMS in flight | outbox write alone |
|---|---|---|---|---|---|---|---|
EOF
    for label in "${BUS_LABELS[@]}"; do
        if [ "${BUS_WINDOWED[$label]}" -gt 0 ]; then
            when="first ${BUS_E2E_S[$label]} s (a fixed window: draining all would take minutes)"
        else
            when="${BUS_E2E_S[$label]} s (${BUS_TAIL_S[$label]} s after the send call returned)"
        fi
        printf '| %s, backlog %s | %s of %s | %s | **%s** | %s %% | %s %% | %s %% | %s s = %s envelopes/s |\n' \
            "$(run_name "$label")" "${BUS_TOTAL[$label]}" "${BUS_DONE[$label]}" "${BUS_TOTAL[$label]}" "$when" \
            "${BUS_RATE[$label]}" "$(pct "${BUS_RATE[$label]}" "${PGB_TPS[1]}")" \
            "$(pct "${BUS_RATE[$label]}" "${PGB_TPS[8]}")" "$(pct "${BUS_RATE[$label]}" "$ZMQ_WN")" \
            "${BUS_WRITE_S[$label]}" "${BUS_WRITE_RATE[$label]}"
    done
    cat <<EOF

Batched is $(calc "round(${BUS_RATE[$B_BIG]} / ${BUS_RATE[$U_BIG]}, 1)")× unbatched with a
backlog of $BIG and $(calc "round(${BUS_RATE[$B_SMALL]} / ${BUS_RATE[$U_SMALL]}, 1)")× with $SMALL.
"Over the CURVE link" is the link between provinces (\`mc_bus_link\`: a CURVE server
ROUTER admitting the other side's key through our ZAP handler, a CURVE client DEALER,
BusProbe taken only from the link): $(pct "${BUS_RATE[$C_BIG]}" "${BUS_RATE[$B_BIG]}") % of
the plain batched rate with a backlog of $BIG, $(pct "${BUS_RATE[$C_SMALL]}" "${BUS_RATE[$B_SMALL]}") % with $SMALL.

Where the work goes, per delivered envelope, both processes together (deltas of
\`pg_stat_database.xact_commit\` and \`pg_stat_wal\`; our own polling left out):

| run | commits | envelopes per commit | WAL records | WAL bytes | WAL syncs (fsyncs) | receiver: median gap between inserts | relay sends (incl. repeats) | out of order |
|---|---|---|---|---|---|---|---|---|
EOF
    for label in "${BUS_LABELS[@]}"; do
        printf '| %s, backlog %s | %s | %s | %s | %s | %s | %s µs | %s | %s |\n' "$(run_name "$label")" "${BUS_TOTAL[$label]}" \
            "$(field "${BUS_PER[$label]}" 1)" \
            "$(calc "round(1 / max($(field "${BUS_PER[$label]}" 1), 1e-9), 1)")" \
            "$(field "${BUS_PER[$label]}" 2)" "$(field "${BUS_PER[$label]}" 3)" \
            "$(field "${BUS_PER[$label]}" 4)" "${BUS_GAP_US[$label]}" "${BUS_SENT[$label]}" "${BUS_ORDER[$label]}"
    done
    for c in 1 8; do
        printf '| pgbench, %s client(s), per INSERT | %s | 1 | %s | %s | %s | | | |\n' "$c" \
            "$(field "${PGB_PER[$c]}" 1)" "$(field "${PGB_PER[$c]}" 2)" "$(field "${PGB_PER[$c]}" 3)" \
            "$(field "${PGB_PER[$c]}" 4)"
    done
    cat <<EOF

The receiver handles a batch in one transaction but one envelope after another, with two
statements each (inbox row, then the handler's insert): the median gap between two
inserts in \`routing.probe_log\` (${BUS_GAP_US[$B_BIG]} µs batched, backlog $BIG) bounds it
at about $(calc "round(1e6 / max(${BUS_GAP_US[$B_BIG]}, 1))") envelopes/s whatever the batch size. In the batched run with a backlog
of $BIG that is about $(calc "round(${BUS_DONE[$B_BIG]} * ${BUS_GAP_US[$B_BIG]} / 1e6, 1)") s of its ${BUS_E2E_S[$B_BIG]} s; the rest is the sender's side of each round
(with $BUS_STREAMS streams, at most $BUS_STREAMS envelopes are in flight, and the next envelope of a
stream is claimed only once the previous one's Ack has been written): the claim query,
sending, marking delivered.
EOF
    if [ -n "${BUS_CLAIM_MS[$U_BIG]:-}" ]; then
        cat <<EOF

The relay's claim query (\`common/bus.c\`, \`sql_claim\`: \`DISTINCT ON (destination,
dossier_code)\` over every undelivered row, then \`LIMIT batch\`) took
**${BUS_CLAIM_MS[$U_BIG]} ms** (EXPLAIN ANALYZE of its SELECT part) with
${BUS_CLAIM_PENDING[$U_BIG]} envelopes still pending after the unbatched window. Its cost
grows with the backlog, and with MOTCUA_BUS_BATCH=1 it is paid once per envelope: that is
why the unbatched rate falls as the backlog grows (${BUS_RATE[$U_SMALL]}/s with $SMALL
pending, ${BUS_RATE[$U_BIG]}/s with $BIG).
EOF
    fi
    cat <<EOF

## POST /v1/dossiers (motcua-intake, with motcua-routing consuming)

wrk, 2 threads, ${WRK_SECONDS} s per run, the same valid submission every time (bench/post_dossier.lua:
procedure $PROCEDURE, online, with its required documents);
a checkpoint just before each run. A request is one transaction: dossier code counter,
dossier, its event, the DossierSubmitted envelope in the outbox (and the Idempotency-Key
row when sent). Meanwhile, for every dossier, routing opens a case in a transaction of its
own and sends DossierStatusChanged back, which intake applies to its public status view in
another; both relays claim and mark delivered. All of that shares the cluster and the
$CORES cores with the requests being measured.

| run | connections | **requests/s** | p50 | p90 | p99 | max | non-2xx | socket errors | vs pgbench 1 client | vs pgbench 8 clients | checkpoints during the run |
|---|---|---|---|---|---|---|---|---|---|---|---|
EOF
    for mode in ${BENCH_WRK_MODES:-plain idem}; do
        for c in $WRK_CONNECTIONS; do
            key="$mode-$c"
            printf '| %s | %s | **%s** | %s ms | %s ms | %s ms | %s ms | %s | %s | %s %% | %s %% | %s |\n' \
                "$([ "$mode" = idem ] && echo 'unique Idempotency-Key' || echo 'no Idempotency-Key')" "$c" \
                "${WRK[$key.rps]}" "${WRK[$key.p50]}" "${WRK[$key.p90]}" "${WRK[$key.p99]}" "${WRK[$key.max]}" \
                "${WRK[$key.non2xx]}" "${WRK[$key.sockerr]}" \
                "$(pct "${WRK[$key.rps]}" "${PGB_TPS[1]}")" "$(pct "${WRK[$key.rps]}" "${PGB_TPS[8]}")" \
                "${WRK[$key.ckpt]}"
        done
    done
    cat <<EOF

Afterwards: $DOSSIERS dossiers stored ($IDEM_ROWS with an idempotency key), $CASES cases
opened by routing over the bus; the backlog had drained ${DRAIN_S} s after the last wrk run
ended. Per stored dossier, both services together: $(field "$INTAKE_PER" 1) commits,
$(field "$INTAKE_PER" 2) WAL records, $(field "$INTAKE_PER" 3) WAL bytes, $(field "$INTAKE_PER" 4) WAL syncs.
EOF
    cat <<EOF

What the services' busy database sessions (those inside a transaction) were doing,
pg_stat_activity sampled every 100 ms during each run (share of samples), and the share of
samples in which an autovacuum worker was busy in the database:

| run | connections | waiting for a row lock (Lock/transactionid) | on CPU | idle in transaction | WAL fsync (IO/WALSync) | other | autovacuum at work |
|---|---|---|---|---|---|---|---|
EOF
    for mode in ${BENCH_WRK_MODES:-plain idem}; do
        for c in $WRK_CONNECTIONS; do
            key="$mode-$c"
            printf '| %s | %s | %s %% | %s %% | %s %% | %s %% | %s %% | %s %% |\n' \
                "$([ "$mode" = idem ] && echo 'unique Idempotency-Key' || echo 'no Idempotency-Key')" "$c" \
                "${WRK[$key.lock]:-?}" "${WRK[$key.cpu]:-?}" "${WRK[$key.idletx]:-?}" \
                "${WRK[$key.walsync]:-?}" "${WRK[$key.other]:-?}" "${WRK[$key.autovacuum]:-?}"
        done
    done
    cat <<EOF

A row lock wait is a session waiting for another transaction to end: every submission to
an agency updates the same \`intake.code_sequences\` row (that day's dossier counter) first
and keeps it locked until its commit, so submissions to one agency commit one after
another. "idle in transaction" is a session holding its transaction open while it waits
for the service's next statement (one round trip per statement, on busy cores).
EOF
    cat <<EOF

## How to read this

The baselines are the ceilings of the two things the bus is built from, measured on the
same cluster in the same run. ZeroMQ moves hundreds of thousands of small messages a
second and is never the limit; PostgreSQL commits are. With fsync on, a commit waits for
a WAL flush, so pgbench with 1 client is the price of one durable step at a time and
pgbench with 8 clients shows what group commit gets from concurrency (WAL syncs per
commit below 1). A delivered envelope needs at least three transactions (outbox insert,
the receiver's inbox transaction, the sender marking it delivered) plus the relay's claim:
*unbatched* that is several commits per envelope and the bus should land well below pgbench
with 1 client; *batched*, one commit carries many envelopes ("envelopes per commit"), so
the bus could pass pgbench, until something paid per envelope or per round (the claim
query, protobuf, libpq, two processes and PostgreSQL sharing $CORES cores) becomes the
limit. POST /v1/dossiers is one transaction per request with the bus hop to routing
running beside it, so pgbench is again its ceiling; its latency is the commit plus the
time queued behind other requests (the service has a pool of 4 database connections, the
rest wait). Raw logs of this run are in build/bench/logs/.
EOF
} >"$RESULTS"
say "done: bench/RESULTS.md"
