#!/usr/bin/env bash
# mk/pg.sh: a private PostgreSQL cluster for tests and `make run`, in a directory of ours.
#
#   mk/pg.sh start   DIR PORT   initdb if needed, start, wait until ready, create database
#                               `motcua`; prints postgresql://motcua@127.0.0.1:PORT/motcua
#   mk/pg.sh restart DIR        fast restart on the same port; prints the URL again
#   mk/pg.sh stop    DIR        fast shutdown (idempotent: 0 when nothing runs)
#   mk/pg.sh kill    DIR        immediate shutdown, i.e. a simulated crash (no checkpoint)
#   mk/pg.sh status  DIR        says whether it runs; exit 0 running, 3 stopped, 4 no cluster
#   mk/pg.sh url     DIR        prints the URL of the cluster (running or not)
#   mk/pg.sh destroy DIR        kill it and delete its data (and any relocated copy)
#
# Layout: DIR/data (the cluster), DIR/run (unix socket), DIR/postgresql.log. The
# superuser is `motcua`, authentication is trust, and the server listens on
# 127.0.0.1 only. fsync, full_page_writes and synchronous_commit stay on: the crash
# tests rely on committed data surviving `kill`. Settings are (re)written on every
# start to DATA/motcua.conf, included from postgresql.conf.
#
# Only the URL goes to stdout; progress and errors go to stderr.
#
# Running as root: PostgreSQL refuses to run as root, so the server runs as the
# system user `motcua` (created with `useradd --system` when missing; override with
# MOTCUA_PG_OSUSER) and DIR is chowned to it. If that user cannot reach DIR because a
# parent directory is not traversable (DIR under /root, or under a `mktemp -d`
# directory), the cluster is relocated to
#     ${MOTCUA_PG_FALLBACK_DIR:-/var/tmp/motcua-pg}/<basename DIR>-<cksum of DIR>
# the location is recorded in DIR/pg.location, and DIR/data, DIR/run and
# DIR/postgresql.log become symlinks to it, so root sees the usual layout. Relocated
# clusters whose DIR is gone are deleted by the next relocation (unless running).
set -euo pipefail

prog="mk/pg.sh"
OSUSER="${MOTCUA_PG_OSUSER:-motcua}"
DBUSER="motcua"
DBNAME="motcua"
FALLBACK_ROOT="${MOTCUA_PG_FALLBACK_DIR:-/var/tmp/motcua-pg}"
TIMEOUT="${MOTCUA_PG_TIMEOUT:-60}"

# Our explicit flags must win over whatever the caller's libpq environment says.
unset PGDATA PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS PGPASSWORD || true

say() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$prog" "$*" >&2
    exit 1
}
usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# ---- PostgreSQL binaries ---------------------------------------------------------
# Debian keeps the server binaries out of PATH, in /usr/lib/postgresql/<major>/bin.
find_bindir() {
    if [ -n "${MOTCUA_PG_BINDIR:-}" ]; then
        [ -x "$MOTCUA_PG_BINDIR/initdb" ] || die "MOTCUA_PG_BINDIR=$MOTCUA_PG_BINDIR has no initdb"
        printf '%s\n' "$MOTCUA_PG_BINDIR"
        return
    fi
    local d best=""
    # Highest major version wins (numeric sort on the version component).
    for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5n); do
        [ -x "$d/initdb" ] && best="$d"
    done
    if [ -z "$best" ] && command -v initdb >/dev/null 2>&1; then
        best="$(dirname "$(command -v initdb)")"
    fi
    [ -n "$best" ] || die "PostgreSQL server binaries not found (no /usr/lib/postgresql/*/bin/initdb); run: sh mk/deps.sh"
    printf '%s\n' "$best"
}
BIN="$(find_bindir)"

# ---- privileges -------------------------------------------------------------------
IS_ROOT=0
[ "$(id -u)" -eq 0 ] && IS_ROOT=1

ensure_osuser() {
    id -u "$OSUSER" >/dev/null 2>&1 && return 0
    say "creating system user $OSUSER (PostgreSQL does not run as root)"
    # Two scripts may race here: accept "already exists" when the user now exists.
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$OSUSER" 2>/dev/null || id -u "$OSUSER" >/dev/null 2>&1 ||
        die "could not create system user $OSUSER with useradd"
}

# as_pg CMD...: run CMD as the cluster owner (ourselves unless we are root). The
# working directory is / so that nothing complains about an unreadable cwd.
as_pg() {
    if [ "$IS_ROOT" -eq 1 ]; then
        if command -v runuser >/dev/null 2>&1; then
            (cd / && runuser -u "$OSUSER" -- "$@")
        else
            (cd / && setpriv --reuid="$OSUSER" --regid="$OSUSER" --init-groups -- "$@")
        fi
    else
        (cd / && "$@")
    fi
}

# ---- layout -----------------------------------------------------------------------
# DIR is the directory the caller named; BASE is where data, run and the log really
# are (DIR itself, or the relocated directory recorded in DIR/pg.location).
abspath() {
    local p="$1"
    case "$p" in /*) ;; *) p="$PWD/$p" ;; esac
    # Canonicalise when it exists; otherwise keep it absolute as given.
    if [ -d "$p" ]; then (cd "$p" && pwd -P); else printf '%s\n' "$p"; fi
}

base_of() { # DIR -> BASE for an existing layout
    local dir="$1"
    if [ -f "$dir/pg.location" ]; then
        cat "$dir/pg.location"
    else
        printf '%s\n' "$dir"
    fi
}

# The outermost directory on the way to $1 that $OSUSER cannot traverse (for messages).
blocking_parent() {
    local rest="${1#/}" p="" part
    while [ -n "$rest" ]; do
        part="${rest%%/*}"
        [ "$part" = "$rest" ] && rest="" || rest="${rest#*/}"
        p="$p/$part"
        as_pg test -x "$p" 2>/dev/null || {
            printf '%s\n' "$p"
            return
        }
    done
    printf '%s\n' "$1"
}

# Delete relocated clusters whose DIR no longer points at them and that are not running.
gc_relocated() {
    local b origin pid
    for b in "$FALLBACK_ROOT"/*/; do
        b="${b%/}"
        [ -f "$b/origin" ] || continue
        origin="$(cat "$b/origin")"
        if [ -f "$origin/pg.location" ] && [ "$(cat "$origin/pg.location")" = "$b" ]; then
            continue
        fi
        if [ -f "$b/data/postmaster.pid" ]; then
            pid="$(head -n1 "$b/data/postmaster.pid" 2>/dev/null || true)"
            [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && continue
        fi
        say "removing stale relocated cluster $b (its directory $origin is gone)"
        rm -rf -- "$b"
    done
}

# Prepare DIR for `start` and print BASE. As root this makes DIR (or its relocated
# twin) owned by $OSUSER.
prepare_layout() {
    local dir="$1" base
    mkdir -p "$dir" || die "cannot create $dir"
    if [ "$IS_ROOT" -eq 0 ]; then
        mkdir -p "$dir/run"
        printf '%s\n' "$dir"
        return
    fi
    ensure_osuser
    if [ -f "$dir/pg.location" ]; then
        base="$(cat "$dir/pg.location")"
        [ -d "$base" ] || die "$dir/pg.location points at $base, which is gone; run: $prog destroy $dir"
        chown "$OSUSER:" "$base"
        as_pg test -x "$base" -a -w "$base" ||
            die "$OSUSER cannot use relocated cluster $base; check permissions of $(blocking_parent "$base")"
        printf '%s\n' "$base"
        return
    fi
    chown "$OSUSER:" "$dir"
    [ -d "$dir/run" ] && chown "$OSUSER:" "$dir/run"
    if as_pg test -x "$dir" -a -w "$dir"; then
        mkdir -p "$dir/run"
        chown "$OSUSER:" "$dir/run"
        [ -f "$dir/postgresql.log" ] && chown "$OSUSER:" "$dir/postgresql.log"
        printf '%s\n' "$dir"
        return
    fi
    # DIR is out of reach for the server user. An existing cluster there cannot move.
    if [ -e "$dir/data/PG_VERSION" ]; then
        die "$OSUSER cannot traverse $(blocking_parent "$dir"), so the cluster in $dir/data cannot run; \
make that directory traversable (chmod o+x), or delete $dir/data to let $prog relocate it"
    fi
    local sum
    sum="$(printf '%s' "$dir" | cksum | cut -d' ' -f1)"
    base="$FALLBACK_ROOT/$(basename "$dir")-$sum"
    mkdir -p "$FALLBACK_ROOT"
    chmod 0711 "$FALLBACK_ROOT"
    as_pg test -x "$FALLBACK_ROOT" ||
        die "$OSUSER cannot reach $dir (blocked at $(blocking_parent "$dir")) nor $FALLBACK_ROOT; \
chmod o+x the blocking directory, or set MOTCUA_PG_FALLBACK_DIR to a directory $OSUSER can reach"
    gc_relocated
    # pg.location first: a concurrent gc_relocated must never see a new base unclaimed.
    printf '%s\n' "$base" >"$dir/pg.location"
    mkdir -p "$base/run"
    printf '%s\n' "$dir" >"$base/origin"
    chown -R "$OSUSER:" "$base"
    chmod 0700 "$base"
    say "$OSUSER cannot traverse $(blocking_parent "$dir"); cluster relocated to $base (recorded in $dir/pg.location)"
    rm -rf -- "$dir/run"
    ln -sfn "$base/data" "$dir/data"
    ln -sfn "$base/run" "$dir/run"
    ln -sfn "$base/postgresql.log" "$dir/postgresql.log"
    printf '%s\n' "$base"
}

# ---- helpers on a BASE ------------------------------------------------------------
conf_port() { # BASE -> port recorded at the last start
    local f="$1/data/motcua.conf"
    [ -f "$f" ] || return 1
    sed -n "s/^port = \([0-9][0-9]*\).*/\1/p" "$f" | head -n1
}

url_for() { printf 'postgresql://%s@127.0.0.1:%s/%s\n' "$DBUSER" "$1" "$DBNAME"; }

is_running() { # BASE
    [ -f "$1/data/PG_VERSION" ] || return 1
    as_pg "$BIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1
}

log_tail() { # BASE
    if [ -f "$1/postgresql.log" ]; then
        say "last lines of $1/postgresql.log:"
        tail -n 25 "$1/postgresql.log" | sed 's/^/    /' >&2
    fi
}

wait_ready() { # PORT BASE
    local port="$1" base="$2" i=0
    while ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U "$DBUSER" -d postgres -t 2; do
        i=$((i + 1))
        if [ "$i" -ge $((TIMEOUT * 5)) ]; then
            log_tail "$base"
            die "PostgreSQL on 127.0.0.1:$port not accepting connections after ${TIMEOUT}s"
        fi
        sleep 0.2
    done
}

ensure_db() { # PORT
    local port="$1" psql=("$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U "$DBUSER")
    if [ "$("${psql[@]}" -d postgres -tAc "select 1 from pg_database where datname = '$DBNAME'")" != "1" ]; then
        say "creating database $DBNAME"
        # A concurrent start may have created it meanwhile: check again on failure.
        "${psql[@]}" -d postgres -c "create database $DBNAME" >/dev/null 2>&1 ||
            [ "$("${psql[@]}" -d postgres -tAc "select 1 from pg_database where datname = '$DBNAME'")" = "1" ] ||
            die "could not create database $DBNAME on port $port"
    fi
}

write_conf() { # BASE PORT
    local base="$1" port="$2" data="$1/data" sock
    sock="$base/run"
    # A unix socket path is limited to 107 bytes; the URL uses TCP, so drop the socket
    # rather than fail when the directory is deep.
    if [ "${#sock}" -gt 90 ]; then
        say "socket directory path too long for a unix socket; TCP only"
        sock=""
    fi
    cat >"$data/motcua.conf" <<EOF
# Written by mk/pg.sh at every start; change mk/pg.sh, not this file.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '${sock//\'/\'\'}'
max_connections = 200
shared_buffers = '32MB'
# Durability stays on: the crash tests check that committed data survives.
fsync = on
synchronous_commit = on
full_page_writes = on
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
log_connections = off
log_disconnections = off
EOF
    [ "$IS_ROOT" -eq 1 ] && chown "$OSUSER:" "$data/motcua.conf"
    grep -q "^include_if_exists = 'motcua.conf'" "$data/postgresql.conf" ||
        printf "\ninclude_if_exists = 'motcua.conf'\n" >>"$data/postgresql.conf"
}

do_initdb() { # BASE
    local data="$1/data" locale="C.UTF-8"
    # Debian names it C.utf8; glibc accepts both spellings. Fall back to plain C
    # (still UTF8-encoded) on systems without it.
    locale -a 2>/dev/null | grep -qi '^c\.utf-\{0,1\}8$' || locale="C"
    say "initialising cluster in $data (superuser $DBUSER, UTF8, locale $locale)"
    if ! as_pg "$BIN/initdb" -D "$data" -U "$DBUSER" --auth=trust -E UTF8 --locale="$locale" \
        >"$1/initdb.log" 2>&1; then
        sed 's/^/    /' "$1/initdb.log" >&2
        die "initdb failed in $data"
    fi
}

# ---- commands -----------------------------------------------------------------------
cmd_start() {
    [ $# -eq 2 ] || usage
    local dir port base running_port
    dir="$(abspath "$1")"
    port="$2"
    case "$port" in '' | *[!0-9]*) die "PORT must be a number, got '$port'" ;; esac
    if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then die "PORT out of range: $port"; fi
    base="$(prepare_layout "$dir")"
    dir="$(abspath "$dir")"

    # Serialise concurrent starts of the same cluster. fd 9 must not leak into the
    # postmaster, or the lock would live as long as the server.
    exec 9>>"$dir/.pg.lock"
    flock 9 2>/dev/null || true

    if [ -f "$base/data/PG_VERSION" ]; then
        if [ "$IS_ROOT" -eq 0 ] && [ ! -O "$base/data" ]; then
            die "$base/data belongs to $(stat -c %U "$base/data"), not to you; run as that user (or root), or delete it"
        fi
    elif [ -d "$base/data" ] && [ -n "$(ls -A "$base/data" 2>/dev/null)" ]; then
        die "$base/data exists but holds no cluster (no PG_VERSION); remove it and retry"
    else
        do_initdb "$base"
    fi

    if is_running "$base"; then
        running_port="$(conf_port "$base" || true)"
        if [ "$running_port" != "$port" ]; then
            die "the cluster in $dir already runs on port ${running_port:-?}; stop it first ($prog stop $dir)"
        fi
        say "already running on port $port"
    else
        write_conf "$base" "$port"
        say "starting PostgreSQL on 127.0.0.1:$port (data $base/data, log $base/postgresql.log)"
        if ! as_pg "$BIN/pg_ctl" -D "$base/data" -l "$base/postgresql.log" -w -t "$TIMEOUT" start \
            9>&- >&2; then
            log_tail "$base"
            die "PostgreSQL did not start (is port $port already in use?)"
        fi
    fi
    wait_ready "$port" "$base"
    ensure_db "$port"
    exec 9>&-
    url_for "$port"
}

cmd_restart() {
    [ $# -eq 1 ] || usage
    local dir base port
    dir="$(abspath "$1")"
    base="$(base_of "$dir")"
    [ -f "$base/data/PG_VERSION" ] || die "no cluster in $dir; use: $prog start $dir PORT"
    port="$(conf_port "$base")" || die "no port recorded in $base/data/motcua.conf; use: $prog start $dir PORT"
    say "restarting PostgreSQL on port $port (fast)"
    if ! as_pg "$BIN/pg_ctl" -D "$base/data" -l "$base/postgresql.log" -w -t "$TIMEOUT" -m fast restart >&2; then
        log_tail "$base"
        die "PostgreSQL did not restart"
    fi
    wait_ready "$port" "$base"
    url_for "$port"
}

cmd_stop() { # DIR MODE
    [ $# -eq 2 ] || usage
    local dir base
    dir="$(abspath "$1")"
    base="$(base_of "$dir")"
    if ! is_running "$base"; then
        say "not running ($dir)"
        return 0
    fi
    say "stopping PostgreSQL in $dir ($2)"
    as_pg "$BIN/pg_ctl" -D "$base/data" -w -t "$TIMEOUT" -m "$2" stop >&2 ||
        die "pg_ctl stop -m $2 failed for $base/data"
}

cmd_status() {
    [ $# -eq 1 ] || usage
    local dir base port pid
    dir="$(abspath "$1")"
    base="$(base_of "$dir")"
    if [ ! -f "$base/data/PG_VERSION" ]; then
        echo "no cluster in $dir"
        return 4
    fi
    port="$(conf_port "$base" || echo '?')"
    if is_running "$base"; then
        pid="$(head -n1 "$base/data/postmaster.pid" 2>/dev/null || echo '?')"
        echo "running: pid $pid, $(url_for "$port"), data $base/data, log $base/postgresql.log"
        return 0
    fi
    echo "stopped: data $base/data (last port $port)"
    return 3
}

cmd_url() {
    [ $# -eq 1 ] || usage
    local base port
    base="$(base_of "$(abspath "$1")")"
    port="$(conf_port "$base")" || die "no cluster started yet in $1"
    url_for "$port"
}

cmd_destroy() {
    [ $# -eq 1 ] || usage
    local dir base
    dir="$(abspath "$1")"
    [ -d "$dir" ] || return 0
    base="$(base_of "$dir")"
    is_running "$base" && cmd_stop "$dir" immediate
    if [ "$base" != "$dir" ]; then
        say "removing relocated cluster $base"
        rm -rf -- "$base"
    fi
    rm -rf -- "$dir/data" "$dir/run" "$dir/postgresql.log" "$dir/initdb.log" "$dir/pg.location" "$dir/.pg.lock"
}

[ $# -ge 1 ] || usage
cmd="$1"
shift
case "$cmd" in
start) cmd_start "$@" ;;
restart) cmd_restart "$@" ;;
stop) [ $# -eq 1 ] || usage; cmd_stop "$1" fast ;;
kill) [ $# -eq 1 ] || usage; cmd_stop "$1" immediate ;;
status) cmd_status "$@" ;;
url) cmd_url "$@" ;;
destroy) cmd_destroy "$@" ;;
-h | --help | help) usage ;;
*) say "unknown command '$cmd'"; usage ;;
esac
