#!/usr/bin/env bash
# tests/run.sh: run every test of motcua and end with one line "N passed, N failed".
#
#   unit    cmocka groups (tests/unit), against a private PostgreSQL made by mk/pg.sh
#   fuzz    each libFuzzer target of tests/fuzz (build/fuzz) for FUZZ_TEST_SECONDS (3)
#           from its corpus: one test per target; a crash keeps its input
#   system  Python black-box tests (tests/system/test_*.py): real binaries, real
#           PostgreSQL, real ZeroMQ and HTTP on loopback, SIGKILL and restarts
#
# MOTCUA_BUILD selects the build (default build/san: ASan + UBSan). Arguments, if
# any, are unittest names for the system part (e.g. test_bus_crash).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export MOTCUA_BUILD=${MOTCUA_BUILD:-$ROOT/build/san}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
PY=/usr/bin/python3

work=$(mktemp -d /tmp/motcua-test.XXXXXX)
chmod 755 "$work"
cleanup() {
    bash mk/pg.sh destroy "$work/pg" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0

echo "== unit tests ($MOTCUA_BUILD)"
port=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if url=$(bash mk/pg.sh start "$work/pg" "$port" 2>"$work/pg.err"); then
    export MOTCUA_TEST_DATABASE_URL=$url
else
    echo "warning: no PostgreSQL for unit tests (database tests will be skipped):" >&2
    cat "$work/pg.err" >&2
fi
"$MOTCUA_BUILD/bin/unit-tests" 2>&1 | tee "$work/unit.out"
line=$(grep -E '^unit: [0-9]+ passed, [0-9]+ failed' "$work/unit.out" | tail -n 1)
if [ -n "$line" ]; then
    passed=$((passed + $(echo "$line" | sed -E 's/^unit: ([0-9]+) passed.*/\1/')))
    failed=$((failed + $(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')))
else
    echo "unit tests crashed before their summary" >&2
    failed=$((failed + 1))
fi
bash mk/pg.sh destroy "$work/pg" >/dev/null 2>&1 || true
unset MOTCUA_TEST_DATABASE_URL

echo "== fuzz targets (build/fuzz, ${FUZZ_TEST_SECONDS:-3} s each)"
bash tests/fuzz/run.sh "${FUZZ_TEST_SECONDS:-3}" 2>&1 | tee "$work/fuzz.out"
line=$(grep -E '^fuzz: [0-9]+ passed, [0-9]+ failed' "$work/fuzz.out" | tail -n 1)
if [ -n "$line" ]; then
    passed=$((passed + $(echo "$line" | sed -E 's/^fuzz: ([0-9]+) passed.*/\1/')))
    failed=$((failed + $(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')))
else
    echo "fuzz targets crashed before their summary" >&2
    failed=$((failed + 1))
fi

echo "== system tests"
(cd tests/system && $PY run.py "$@") 2>&1 | tee "$work/system.out"
line=$(grep -E '^system: [0-9]+ passed, [0-9]+ failed' "$work/system.out" | tail -n 1)
if [ -n "$line" ]; then
    passed=$((passed + $(echo "$line" | sed -E 's/^system: ([0-9]+) passed.*/\1/')))
    failed=$((failed + $(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')))
else
    echo "system tests crashed before their summary" >&2
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
