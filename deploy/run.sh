#!/usr/bin/env bash
# deploy/run.sh: run the whole suite on one machine (the engine of `make run/up/down`).
#
#   bash deploy/run.sh run      start everything, wait until ready, follow the logs;
#                               Ctrl-C stops everything and exits 0
#   bash deploy/run.sh up       the same in the background; returns once all are ready
#   bash deploy/run.sh down     stop the background supervisor, everything it started,
#                               and PostgreSQL (idempotent)
#   bash deploy/run.sh status   each process, its pid and its readiness
#
# What runs: PostgreSQL via `mk/pg.sh start var/pg $MOTCUA_PG_PORT` (default 5433;
# skipped when MOTCUA_DATABASE_URL is already set: that database is used as is), the
# sandbox (deploy/sandbox/sandbox.py, GET /healthz on MOTCUA_SANDBOX_PORT, default 8090)
# and the six services from $MOTCUA_BIN_DIR (default build/release/bin), each on
# MOTCUA_<SVC>_HTTP_PORT (intake 8080, routing 8081, interconnect 8082, payment 8083,
# postal 8084, notify 8085), with MOTCUA_DATABASE_URL and MOTCUA_HTTP_HOST=127.0.0.1
# set and every other MOTCUA_* variable of the caller passed through.
#
# Design: one supervisor process (this script with the internal command __supervise),
# started in its own session so that a terminal's Ctrl-C reaches only the foreground
# part, which then shuts everything down in order. The supervisor runs one small loop
# per child that restarts it whenever it dies (1 s backoff, doubling up to 8 s while it
# keeps dying within 10 s of its start) and logs
#     supervisor: motcua-routing exited (signal KILL), restarting in 1s
# On SIGTERM the supervisor sends SIGTERM to every child, waits up to 15 s, then sends
# SIGKILL. Its children carry MOTCUA_SUPERVISOR_ROOT=<var dir> in their environment,
# which is how `down` finds stragglers of this checkout and only those.
#
# Files: var/log/<name>.log (name: supervisor, sandbox, motcua-intake, ...),
# var/run/<name>.pid, var/run/supervisor.pid, var/pg (the database cluster),
# var/demo-keys.json (demo API keys, made by `motcuactl keys demo` once all is ready),
# var/curve/ (the key pairs of our province H99 and of the sandbox's peer province H98,
# and in var/curve/services one per service, made by `motcuactl curve keygen` once) and var/peers.json (the link's allow-list),
# var/intake-integrator.key (the demo integrator key interconnect and postal submit
# dossiers to intake with).
#
# The front door: nginx (`nginx` process, GET /healthz on MOTCUA_FRONT_PORT, default
# 8000) with var/nginx/nginx.conf, made by deploy/nginx/local-conf.sh from
# deploy/nginx/nginx.conf (docker-compose's) with 127.0.0.1 and the ports above; it
# routes /v1/..., /health/<service> and serves the operator console (deploy/console) at
# /console/. Its pid and temporary files are in var/nginx, its log in var/log/nginx.log;
# as root its workers run as www-data (MOTCUA_FRONT_USER). Without nginx installed the
# suite runs without a front door (a warning says so).
set -euo pipefail

SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(cd "$(dirname "$SCRIPT")/.." && pwd -P)"
VAR="$ROOT/var"
LOG_DIR="$VAR/log"
RUN_DIR="$VAR/run"
PG_DIR="$VAR/pg"
PG_SH="$ROOT/mk/pg.sh"
BIN_DIR="${MOTCUA_BIN_DIR:-$ROOT/build/release/bin}"
case "$BIN_DIR" in /*) ;; *) BIN_DIR="$PWD/$BIN_DIR" ;; esac
PYTHON="${MOTCUA_PYTHON:-/usr/bin/python3}"
SANDBOX_PY="$ROOT/deploy/sandbox/sandbox.py"
NGINX="${MOTCUA_NGINX:-$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)}"
FRONT_DIR="$VAR/nginx"
FRONT_CONF="$FRONT_DIR/nginx.conf"

SERVICES=(intake routing interconnect payment postal notify)
declare -A DEFAULT_PORT=([intake]=8080 [routing]=8081 [interconnect]=8082
    [payment]=8083 [postal]=8084 [notify]=8085)
PG_PORT="${MOTCUA_PG_PORT:-5433}"
SANDBOX_PORT="${MOTCUA_SANDBOX_PORT:-8090}"
FRONT_PORT="${MOTCUA_FRONT_PORT:-8000}"
READY_TIMEOUT="${MOTCUA_READY_TIMEOUT:-60}"
STOP_TIMEOUT=15 # a service gives itself 10 s (MC_SERVICE_GRACE_MS)
MARK="MOTCUA_SUPERVISOR_ROOT=$VAR"

say() { printf 'run: %s\n' "$*" >&2; }
die() {
    printf 'run: error: %s\n' "$*" >&2
    exit 1
}
ts() { date '+%Y-%m-%d %H:%M:%S'; }

svc_port_var() { printf 'MOTCUA_%s_HTTP_PORT' "${1^^}"; }
svc_port() {
    local v
    v="$(svc_port_var "$1")"
    printf '%s\n' "${!v:-${DEFAULT_PORT[$1]}}"
}

# Where to reach our listeners: the bind address, unless it is a wildcard.
check_host() {
    local h="${MOTCUA_HTTP_HOST:-127.0.0.1}"
    case "$h" in
    0.0.0.0 | '::' | '*') echo 127.0.0.1 ;;
    *) echo "$h" ;;
    esac
}

have_sandbox() { [ -f "$SANDBOX_PY" ]; }
have_front() { [ -x "$NGINX" ]; }

# The settings of the running copy (ports, database) are saved at start so that
# `status` and a second `up` probe the right ports whatever this shell's environment.
save_state() {
    local v
    {
        for v in MOTCUA_DATABASE_URL MOTCUA_HTTP_HOST MOTCUA_SANDBOX_PORT MOTCUA_FRONT_PORT $(compgen -v | grep '^MOTCUA_.*_HTTP_PORT$'); do
            printf 'export %s=%q\n' "$v" "${!v}"
        done
    } >"$RUN_DIR/run.env"
}
load_state() {
    if [ -f "$RUN_DIR/run.env" ]; then
        # shellcheck disable=SC1091
        . "$RUN_DIR/run.env"
        SANDBOX_PORT="$MOTCUA_SANDBOX_PORT"
        FRONT_PORT="${MOTCUA_FRONT_PORT:-$FRONT_PORT}"
    fi
}

# Every supervised process by name: sandbox first (the services talk to it), the
# front door last.
proc_names() {
    have_sandbox && echo sandbox
    local s
    for s in "${SERVICES[@]}"; do echo "motcua-$s"; done
    have_front && echo nginx
    return 0
}

# name -> "port path" of its readiness probe
probe_of() {
    case "$1" in
    sandbox) echo "$SANDBOX_PORT /healthz" ;;
    nginx) echo "$FRONT_PORT /healthz" ;;
    motcua-*) echo "$(svc_port "${1#motcua-}") /readyz" ;;
    esac
}

http_code() { # PORT PATH -> HTTP status code, 000 when nothing answers
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$(check_host):$1$2" 2>/dev/null || true
}

is_ready() {
    local port path
    read -r port path <<<"$(probe_of "$1")"
    [ "$(http_code "$port" "$path")" = "200" ]
}

port_in_use() { (exec 3<>"/dev/tcp/$(check_host)/$1") 2>/dev/null; }

# ---- process helpers ----------------------------------------------------------------
# alive PID: the process exists and is not a zombie (a zombie has exited already).
alive() {
    local stat
    [ -n "$1" ] && stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != "Z" ]
}

read_pid() { if [ -f "$1" ]; then head -n1 "$1" 2>/dev/null || true; fi; }

supervisor_pid() { # prints the pid of this checkout's running supervisor, if any
    local pid
    pid="$(read_pid "$RUN_DIR/supervisor.pid")"
    [ -n "$pid" ] && alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$SCRIPT __supervise" || return 1
    echo "$pid"
}

# Pids of every process carrying our mark, except this shell and its subshells.
our_pids() {
    local f pid
    local files
    # Collect first, then check: grep and pipeline subshells are gone by then.
    files="$(grep -lzxF "$MARK" /proc/[0-9]*/environ 2>/dev/null || true)"
    while read -r f; do
        [ -n "$f" ] || continue
        pid="${f#/proc/}"
        pid="${pid%/environ}"
        [ "$pid" = "$$" ] || [ "$pid" = "$BASHPID" ] && continue
        alive "$pid" && echo "$pid"
    done <<<"$files"
    return 0
}

# ---- the supervisor (runs detached, output in var/log/supervisor.log) ---------------------
describe_status() { # exit status of wait -> "status N" or "signal NAME"
    if [ "$1" -gt 128 ] && [ "$1" -lt 160 ]; then
        echo "signal $(kill -l $(($1 - 128)) 2>/dev/null || echo $(($1 - 128)))"
    else
        echo "status $1"
    fi
}

# keep_running NAME CMD...: run CMD, restart it whenever it dies, until SIGTERM; then
# SIGTERM the child, wait up to STOP_TIMEOUT seconds, SIGKILL it if still there.
keep_running() {
    local name="$1" log="$LOG_DIR/$1.log"
    shift
    local cpid="" spid="" stop=0 st=0 backoff=1 started i msg key_var
    trap 'stop=1; [ -n "$cpid" ] && kill -TERM "$cpid" 2>/dev/null; [ -n "$spid" ] && kill "$spid" 2>/dev/null' TERM
    trap '' INT HUP
    while [ "$stop" -eq 0 ]; do
        started=$SECONDS
        printf '%s supervisor: starting %s\n' "$(ts)" "$name" >>"$log"
        key_var="$(intake_key_var "$name")"
        if [ -n "$key_var" ] && [ -z "${!key_var:-}" ] && [ -s "$INTAKE_KEY_FILE" ]; then
            env "$key_var=$(cat "$INTAKE_KEY_FILE")" "$@" >>"$log" 2>&1 </dev/null &
        else
            "$@" >>"$log" 2>&1 </dev/null &
        fi
        cpid=$!
        echo "$cpid" >"$RUN_DIR/$name.pid"
        [ "$stop" -eq 1 ] && kill -TERM "$cpid" 2>/dev/null # TERM came before cpid was set
        # wait returns early when our trap runs; the child is then still there.
        while :; do
            wait "$cpid" 2>/dev/null
            st=$?
            [ -e "/proc/$cpid" ] && [ "$st" -ne 127 ] && [ "$stop" -eq 0 ] && continue
            break
        done
        if [ "$stop" -eq 1 ]; then
            i=0
            while alive "$cpid" && [ "$i" -lt $((STOP_TIMEOUT * 10)) ]; do
                sleep 0.1
                i=$((i + 1))
            done
            if alive "$cpid"; then
                msg="supervisor: $name did not stop within ${STOP_TIMEOUT}s, sending SIGKILL"
                echo "$(ts) $msg"
                printf '%s %s\n' "$(ts)" "$msg" >>"$log"
                kill -KILL "$cpid" 2>/dev/null
            fi
            wait "$cpid" 2>/dev/null
            break
        fi
        [ $((SECONDS - started)) -ge 10 ] && backoff=1
        msg="supervisor: $name exited ($(describe_status "$st")), restarting in ${backoff}s"
        echo "$(ts) $msg"
        printf '%s %s\n' "$(ts)" "$msg" >>"$log"
        sleep "$backoff" &
        spid=$!
        wait "$spid" 2>/dev/null
        spid=""
        backoff=$((backoff * 2 > 8 ? 8 : backoff * 2))
    done
    rm -f "$RUN_DIR/$name.pid"
    printf '%s supervisor: %s stopped\n' "$(ts)" "$name" >>"$log"
}

supervise() {
    # A supervisor must outlive surprises: no errexit here, every status is handled.
    set +e
    local loops=() name pid="" stopping=0 i
    echo "$$" >"$RUN_DIR/supervisor.pid.tmp" && mv -f "$RUN_DIR/supervisor.pid.tmp" "$RUN_DIR/supervisor.pid"
    echo "$(ts) supervisor: started (pid $$), database ${MOTCUA_DATABASE_URL:-(unset)}"
    trap 'stopping=1' TERM INT HUP
    for name in $(proc_names); do
        [ "$stopping" -eq 1 ] && break
        if [ "$name" = sandbox ]; then
            keep_running sandbox "$PYTHON" "$SANDBOX_PY" &
        elif [ "$name" = nginx ]; then
            keep_running nginx "$NGINX" -e stderr -p "$FRONT_DIR/" -c "$FRONT_CONF" &
        else
            keep_running "$name" "$BIN_DIR/$name" &
        fi
        loops+=("$!")
    done
    # `wait` returns when a signal is trapped; the loops never end on their own.
    while [ "$stopping" -eq 0 ]; do
        wait
        [ "$stopping" -eq 1 ] && break
        for pid in "${loops[@]}"; do alive "$pid" && continue 2; done
        echo "$(ts) supervisor: every child loop ended, giving up"
        break
    done
    echo "$(ts) supervisor: stopping (SIGTERM to every child, SIGKILL after ${STOP_TIMEOUT}s)"
    for pid in "${loops[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    # Each loop bounds its own child's shutdown; bound the whole as well.
    i=0
    while [ "$i" -lt $(((STOP_TIMEOUT + 3) * 10)) ]; do
        for pid in "${loops[@]}"; do alive "$pid" && break; pid=""; done
        [ -z "$pid" ] && break
        sleep 0.1
        i=$((i + 1))
    done
    for pid in $(our_pids); do
        [ "$pid" = "$$" ] && continue
        echo "$(ts) supervisor: pid $pid still there, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    rm -f "$RUN_DIR"/*.pid
    echo "$(ts) supervisor: stopped"
    exit 0
}

# ---- foreground commands ---------------------------------------------------------------
preflight() {
    command -v curl >/dev/null 2>&1 || die "curl is missing; install the dependencies: sh mk/deps.sh"
    local s missing=""
    for s in "${SERVICES[@]}"; do
        [ -x "$BIN_DIR/motcua-$s" ] || missing="$missing motcua-$s"
    done
    [ -z "$missing" ] || die "not built in $BIN_DIR:$missing; run \`make\` (or set MOTCUA_BIN_DIR)"
    if have_sandbox; then
        [ -x "$PYTHON" ] || die "$PYTHON not found (set MOTCUA_PYTHON); the sandbox needs it"
    else
        say "warning: $SANDBOX_PY not found; running without the sandbox"
    fi
    have_front || say "warning: nginx not found ($NGINX); running without the front door and console (sh mk/deps.sh installs it)"
    local name port path busy=""
    for name in $(proc_names); do
        read -r port path <<<"$(probe_of "$name")"
        port_in_use "$port" && busy="$busy $name:$port"
    done
    [ -z "$busy" ] || die "port(s) already in use:$busy; is another copy running? (make down, or set MOTCUA_<SVC>_HTTP_PORT)"
}

print_block() {
    local s port h
    h="$(check_host)"
    echo
    echo "motcua is up"
    for s in "${SERVICES[@]}"; do
        port="$(svc_port "$s")"
        printf '  %-20s http://%s:%s/healthz  /readyz  /metrics\n' "motcua-$s" "$h" "$port"
    done
    have_sandbox && printf '  %-20s http://%s:%s/\n' "sandbox" "127.0.0.1" "$SANDBOX_PORT"
    if have_front; then
        printf '  %-20s http://%s:%s/v1/...  /health/<service>\n' "front door (nginx)" "$h" "$FRONT_PORT"
        printf '  %-20s http://%s:%s/console/  (asks for an operator API key)\n' "console" "$h" "$FRONT_PORT"
    fi
    printf '  %-20s %s\n' "database" "$MOTCUA_DATABASE_URL"
    if [ -f "$DEMO_KEYS" ]; then
        printf '  %-20s %s (officer per agency, integrator, operator)\n' "API keys" \
            "${DEMO_KEYS#"$PWD"/}"
    fi
    printf '  %-20s %s/  (tail -F %s/*.log)\n' "logs" "$LOG_DIR" "$LOG_DIR"
    printf '  %-20s %s\n' "stop" "$1"
    echo
}

# ---- demo API keys ----------------------------------------------------------------------
# `motcuactl keys demo` (from the same bin dir) writes var/demo-keys.json (mode 0600):
# an officer key per demo agency that is not external, an integrator and an operator, as
# [{name, agency, scopes, key}]. Idempotent: the file is kept while its keys are valid,
# else the old demo keys are revoked and new ones written. A failure is a warning, not
# fatal: the suite runs, only without demo keys.
DEMO_KEYS="$VAR/demo-keys.json"
DEMO_AGENCIES="$ROOT/deploy/data/catalog/agencies.json"
demo_keys() {
    local ctl="$BIN_DIR/motcuactl" out
    if [ ! -x "$ctl" ]; then
        say "warning: $ctl is not built; no demo API keys (run \`make\`)"
        return 0
    fi
    if out="$("$ctl" keys demo --agencies "$DEMO_AGENCIES" --out "$DEMO_KEYS" 2>&1)"; then
        say "$out"
    else
        say "warning: no demo API keys: motcuactl keys demo failed:"
        printf '%s\n' "$out" | sed 's/^/    /' >&2
    fi
}

# interconnect (the dossiers of the national portal and of peer provinces) and postal
# (postal intake) submit to intake with an integrator key: the demo one, kept in a file
# the supervisor reads each time it starts them. The first time, they started before
# the key existed, so they are restarted once (the supervisor brings them back within a
# second).
INTAKE_KEY_FILE="$VAR/intake-integrator.key"
intake_key_var() { # PROCESS: the variable that gives it the key, if it needs one
    case "$1" in
    motcua-interconnect) echo MOTCUA_INTERCONNECT_INTAKE_KEY ;;
    motcua-postal) echo MOTCUA_POSTAL_INTAKE_KEY ;;
    esac
}
intake_key() {
    local had=0 key name var
    [ -s "$INTAKE_KEY_FILE" ] && had=1
    [ -f "$DEMO_KEYS" ] || return 0
    key="$("$PYTHON" -c 'import json,sys
print(next((k["key"] for k in json.load(open(sys.argv[1])) if "integrator" in k["scopes"]), ""))' \
        "$DEMO_KEYS" 2>/dev/null)" || return 0
    [ -n "$key" ] || return 0
    (umask 077 && printf '%s\n' "$key" >"$INTAKE_KEY_FILE.tmp") && mv -f "$INTAKE_KEY_FILE.tmp" "$INTAKE_KEY_FILE"
    [ "$had" -eq 0 ] || return 0
    for name in motcua-interconnect motcua-postal; do
        var="$(intake_key_var "$name")"
        if [ -z "${!var:-}" ] && [ -f "$RUN_DIR/$name.pid" ]; then
            say "restarting $name with the demo integrator key"
            kill -TERM "$(cat "$RUN_DIR/$name.pid")" 2>/dev/null || true
        fi
    done
}

# ---- the link to another province ---------------------------------------------------
# Our province (H99) links over CURVE to the sandbox's stand-in of Tỉnh Sông Mã (H98):
# both key pairs are made once into var/curve, the allow-list is var/peers.json
# (docs/interconnect-peers.md). Set MOTCUA_INTERCONNECT_LINK_BIND= (empty) to run
# without a link.
CURVE_DIR="$VAR/curve"
province_link() {
    local ctl="$BIN_DIR/motcuactl" p ours theirs
    [ -n "${MOTCUA_INTERCONNECT_LINK_BIND-x}" ] || return 0
    if [ ! -x "$ctl" ]; then
        say "warning: $ctl is not built; no link to the sandbox's peer province"
        return 0
    fi
    mkdir -p "$CURVE_DIR"
    for p in H99 H98; do
        if [ ! -f "$CURVE_DIR/${p}_secret" ]; then
            rm -f "$CURVE_DIR/$p"
            "$ctl" curve keygen "$p" "$CURVE_DIR/$p" >/dev/null ||
                { say "warning: no key pair for $p; no link"; return 0; }
        fi
    done
    ours="$(sed -n 's/^ *public-key = "\(.*\)"$/\1/p' "$CURVE_DIR/H99_secret")"
    theirs="$(sed -n 's/^ *public-key = "\(.*\)"$/\1/p' "$CURVE_DIR/H98_secret")"
    # Z85 keys hold neither quotes nor backslashes: safe inside a JSON string.
    printf '[{"province": "H98", "name": "Tỉnh Sông Mã (sandbox)", "endpoint": "tcp://127.0.0.1:7191", "public_key": "%s"}]\n' \
        "$theirs" >"$VAR/peers.json"
    export MOTCUA_INTERCONNECT_LINK_BIND="${MOTCUA_INTERCONNECT_LINK_BIND:-tcp://127.0.0.1:7190}"
    export MOTCUA_INTERCONNECT_CERT="${MOTCUA_INTERCONNECT_CERT:-$CURVE_DIR/H99_secret}"
    export MOTCUA_INTERCONNECT_PEERS="${MOTCUA_INTERCONNECT_PEERS:-$VAR/peers.json}"
    export MOTCUA_SANDBOX_PEER_CERT="$CURVE_DIR/H98_secret"
    export MOTCUA_SANDBOX_PEER_BIND="tcp://127.0.0.1:7191"
    export MOTCUA_SANDBOX_PEER_TARGET="$MOTCUA_INTERCONNECT_LINK_BIND"
    export MOTCUA_SANDBOX_PEER_TARGET_KEY="$ours"
}

# The bus between our services runs over CURVE too: a key pair per service, made once
# into var/curve/services (MOTCUA_BUS_CURVE_DIR; set it empty for a plain bus).
service_keys() {
    local ctl="$BIN_DIR/motcuactl" s dir="$CURVE_DIR/services"
    [ -n "${MOTCUA_BUS_CURVE_DIR-x}" ] || return 0
    [ -x "$ctl" ] || return 0
    mkdir -p "$dir"
    for s in "${SERVICES[@]}"; do
        if [ ! -f "$dir/${s}_secret" ]; then
            rm -f "$dir/$s"
            "$ctl" curve keygen "$s" "$dir/$s" >/dev/null ||
                { say "warning: no key pair for $s; the bus stays plain"; return 0; }
        fi
    done
    export MOTCUA_BUS_CURVE_DIR="${MOTCUA_BUS_CURVE_DIR:-$dir}"
}

# Wait until every process answers its probe with 200, or fail naming the laggards.
wait_ready() {
    local sup="$1" deadline=$((SECONDS + READY_TIMEOUT)) name pending next_note=$((SECONDS + 5))
    while :; do
        pending=""
        for name in $(proc_names); do
            is_ready "$name" || pending="$pending $name"
        done
        [ -z "$pending" ] && return 0
        if ! alive "$sup"; then
            say "the supervisor died; last lines of $LOG_DIR/supervisor.log:"
            tail -n 20 "$LOG_DIR/supervisor.log" 2>/dev/null | sed 's/^/    /' >&2
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "not ready after ${READY_TIMEOUT}s:$pending"
            for name in $pending; do
                local port path
                read -r port path <<<"$(probe_of "$name")"
                say "$name: GET http://$(check_host):$port$path -> $(http_code "$port" "$path"); last lines of $LOG_DIR/$name.log:"
                tail -n 20 "$LOG_DIR/$name.log" 2>/dev/null | sed 's/^/    /' >&2
            done
            return 1
        fi
        if [ "$SECONDS" -ge "$next_note" ]; then
            say "waiting for:$pending"
            next_note=$((SECONDS + 5))
        fi
        sleep 0.3
    done
}

# The front door's configuration, made from docker-compose's (deploy/nginx/local-conf.sh)
# with the ports exported above, and checked with nginx -t before anything starts.
front_conf() {
    have_front || return 0
    mkdir -p "$FRONT_DIR"
    bash "$ROOT/deploy/nginx/local-conf.sh" "$FRONT_DIR" >"$FRONT_CONF.tmp" ||
        die "could not make $FRONT_CONF (see above)"
    mv -f "$FRONT_CONF.tmp" "$FRONT_CONF"
    local out
    out="$("$NGINX" -t -q -e stderr -p "$FRONT_DIR/" -c "$FRONT_CONF" 2>&1)" ||
        die "nginx -t failed on $FRONT_CONF: $out"
}

# nginx overwrites its environment with its process title, so the mark does not find
# it: stop a leftover master (a supervisor killed with SIGKILL) by its pid file.
front_down() {
    local pid i
    pid="$(read_pid "$FRONT_DIR/nginx.pid")"
    [ -n "$pid" ] && alive "$pid" || return 0
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$FRONT_CONF" || return 0
    say "terminating the leftover nginx master (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    i=0
    while alive "$pid" && [ "$i" -lt $((STOP_TIMEOUT * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    alive "$pid" && kill -KILL "$pid" $(cat /proc/"$pid"/task/*/children 2>/dev/null) 2>/dev/null
    return 0
}

SUP_PID=""
start_all() { # sets SUP_PID
    local url pid="" i s
    mkdir -p "$LOG_DIR" "$RUN_DIR"
    preflight
    if [ -n "${MOTCUA_DATABASE_URL:-}" ]; then
        say "using MOTCUA_DATABASE_URL from the environment; not starting PostgreSQL"
    else
        url="$(bash "$PG_SH" start "$PG_DIR" "$PG_PORT")" || die "PostgreSQL did not start (see above)"
        export MOTCUA_DATABASE_URL="$url"
    fi
    export MOTCUA_HTTP_HOST="${MOTCUA_HTTP_HOST:-127.0.0.1}"
    export MOTCUA_SANDBOX_PORT="$SANDBOX_PORT"
    export MOTCUA_SANDBOX_DIR="${MOTCUA_SANDBOX_DIR:-$VAR/sandbox}"
    # The national portal's sync API is the sandbox's stand-in; it sends its dossiers to
    # interconnect (docs/portal.md). Set MOTCUA_PORTAL_URL= (empty) to turn the sync off.
    export MOTCUA_PORTAL_URL="${MOTCUA_PORTAL_URL-http://127.0.0.1:$SANDBOX_PORT/portal/api}"
    export MOTCUA_PORTAL_INBOUND_URL="${MOTCUA_PORTAL_INBOUND_URL:-http://127.0.0.1:$(svc_port interconnect)/v1/portal/dossiers}"
    for s in "${SERVICES[@]}"; do export "$(svc_port_var "$s")=$(svc_port "$s")"; done
    # The agency systems' bearer tokens: the sandbox's demo ones, on both sides.
    export MOTCUA_RESIDENCE_TOKEN="${MOTCUA_RESIDENCE_TOKEN:-sandbox-residence-token}"
    export MOTCUA_INSURANCE_TOKEN="${MOTCUA_INSURANCE_TOKEN:-sandbox-insurance-token}"
    export MOTCUA_TAX_TOKEN="${MOTCUA_TAX_TOKEN:-sandbox-tax-token}"
    province_link
    service_keys
    export MOTCUA_FRONT_PORT="$FRONT_PORT"
    save_state
    front_conf

    rm -f "$RUN_DIR"/*.pid
    say "starting the supervisor (log $LOG_DIR/supervisor.log)"
    # setsid: a terminal's Ctrl-C must reach only us, not the services.
    env "$MARK" setsid nohup bash "$SCRIPT" __supervise \
        >>"$LOG_DIR/supervisor.log" 2>&1 </dev/null &
    for i in $(seq 50); do
        pid="$(supervisor_pid || true)"
        [ -n "$pid" ] && break
        sleep 0.1
    done
    [ -n "$pid" ] || die "the supervisor did not start; see $LOG_DIR/supervisor.log"
    SUP_PID="$pid"
}

cmd_up() { # MODE: run|up
    local mode="$1" pid
    if pid="$(supervisor_pid)"; then
        if [ "$mode" = up ]; then
            say "already running (supervisor pid $pid)"
            load_state
            wait_ready "$pid" || die "already running but not ready; see above (make down to stop)"
            print_block "make down"
            return 0
        fi
        die "already running in the background (supervisor pid $pid); stop it with \`make down\`, or follow it with: tail -F $LOG_DIR/*.log"
    fi
    # From here on an interrupt (Ctrl-C, terminal closed) stops everything we started.
    trap 'trap "" INT TERM HUP; echo >&2; say "interrupted, stopping"; cmd_down; exit 130' INT TERM HUP
    start_all
    pid="$SUP_PID"
    if ! wait_ready "$pid"; then
        if [ "${MOTCUA_KEEP_ON_FAIL:-0}" = 1 ]; then
            die "startup failed; left running for inspection (MOTCUA_KEEP_ON_FAIL=1); make down to stop"
        fi
        say "startup failed; stopping everything (logs stay in $LOG_DIR)"
        cmd_down
        exit 1
    fi
    demo_keys
    intake_key
    if [ "$mode" = up ]; then
        print_block "make down"
        return 0
    fi
    print_block "Ctrl-C"
    local fpid
    # On Ctrl-C: stop everything; the follower ends by itself once the supervisor is gone
    # (and shows the shutdown lines meanwhile).
    # (`wait` is not used in the trap: bash would re-raise the SIGINT it is handling.)
    trap 'trap "" INT TERM HUP; echo >&2; say "stopping"; cmd_down; follower_end "$fpid"; exit 0' INT TERM HUP
    follow_logs "$pid" &
    fpid=$!
    wait "$fpid" || true
    say "the supervisor exited unexpectedly; see $LOG_DIR/supervisor.log"
    trap - INT TERM HUP
    cmd_down
    exit 1
}

follower_end() { # give the log follower up to 2 s to print the last lines and end
    local i=0
    while kill -0 "$1" 2>/dev/null && [ "$i" -lt 20 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill "$1" 2>/dev/null || true
}

# Follow every log until the supervisor (pid $1) is gone, each line prefixed with the
# name of its process, as docker-compose does. tail announces a file switch with a
# "==> FILE <==" header (after an empty line), which becomes the prefix.
follow_logs() {
    local name="" line
    trap '' INT # Ctrl-C is for the foreground shell; we show the shutdown, then end.
    tail -n 0 -F --pid="$1" "$LOG_DIR"/*.log "$PG_DIR/postgresql.log" 2>/dev/null |
        while IFS= read -r line; do
            case "$line" in
            "==> "*" <==")
                name="${line#==> }"
                name="${name% <==}"
                name="${name##*/}"
                name="${name%.log}"
                ;;
            "") ;;
            *) printf '%-19s | %s\n' "$name" "$line" ;;
            esac
        done
}

cmd_down() {
    local pid i left
    if pid="$(supervisor_pid)"; then
        say "stopping the supervisor (pid $pid) and its children"
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while alive "$pid" && [ "$i" -lt $(((STOP_TIMEOUT + 5) * 10)) ]; do
            sleep 0.1
            i=$((i + 1))
        done
    fi
    # Stragglers: a supervisor killed with SIGKILL, or one that hung.
    left="$(our_pids)"
    if [ -n "$left" ]; then
        say "terminating leftover processes: ${left//$'\n'/ }"
        # shellcheck disable=SC2086
        kill -TERM $left 2>/dev/null || true
        i=0
        while [ -n "$(our_pids)" ] && [ "$i" -lt $((STOP_TIMEOUT * 10)) ]; do
            sleep 0.1
            i=$((i + 1))
        done
        left="$(our_pids)"
        # shellcheck disable=SC2086
        [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
        sleep 0.2
    fi
    front_down
    rm -f "$RUN_DIR"/*.pid "$RUN_DIR/run.env"
    if [ -d "$PG_DIR" ]; then
        bash "$PG_SH" stop "$PG_DIR" || say "warning: could not stop PostgreSQL in $PG_DIR"
    fi
    left="$(our_pids)"
    [ -z "$left" ] || die "processes still running after down: ${left//$'\n'/ }"
    say "stopped"
}

cmd_status() {
    local pid name port path code state rc=0 p
    if pid="$(supervisor_pid)"; then
        load_state
        printf '%-20s running (pid %s)\n' supervisor "$pid"
    else
        printf '%-20s not running\n' supervisor
        rc=1
    fi
    printf '%-20s %s\n' postgresql "$(bash "$PG_SH" status "$PG_DIR" 2>/dev/null || true)"
    for name in $(proc_names); do
        read -r port path <<<"$(probe_of "$name")"
        p="$(read_pid "$RUN_DIR/$name.pid")"
        if [ -n "$p" ] && alive "$p"; then state="pid $p"; else state="no process"; fi
        code="$(http_code "$port" "$path")"
        if [ "$code" = 200 ]; then
            printf '%-20s %-12s ready      (GET :%s%s -> 200)\n' "$name" "$state" "$port" "$path"
        else
            printf '%-20s %-12s NOT READY  (GET :%s%s -> %s)\n' "$name" "$state" "$port" "$path" "$code"
            rc=1
        fi
    done
    return "$rc"
}

usage() {
    sed -n '2,9p' "$SCRIPT" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -eq 1 ] || usage
case "$1" in
run) cmd_up run ;;
up) cmd_up up ;;
down) cmd_down ;;
status) cmd_status ;;
__supervise) supervise ;;
-h | --help | help) usage ;;
*)
    say "unknown command '$1'"
    usage
    ;;
esac
