#!/usr/bin/env bash
# tests/fuzz/run.sh: run libFuzzer targets from their corpora; one test per target.
#
#   bash tests/fuzz/run.sh SECONDS [NAME...]    (default: every build/fuzz/fuzz_* target)
#
# Each target starts from tests/fuzz/corpus/<name> (the seeds, read only) and
# build/fuzz/corpus/<name> (what earlier runs found; new inputs are written there) and
# runs for SECONDS. A crash, leak, sanitizer report or timeout fails the target; the
# input is kept as build/fuzz/crashes/<name>-crash-<sha1> (or -leak-, -timeout-) and
# its path printed. Reproduce with: build/fuzz/fuzz_<name> <that file>.
# Ends with "fuzz: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
shift || true
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for b in build/fuzz/fuzz_*; do
        [ -x "$b" ] && names+=("${b#build/fuzz/fuzz_}")
    done
fi
mkdir -p build/fuzz/crashes build/fuzz/logs
# A leak is a failure too; the targets write their own quiet logs.
export ASAN_OPTIONS=${FUZZ_ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${FUZZ_UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
for name in "${names[@]}"; do
    bin=build/fuzz/fuzz_$name
    seeds=tests/fuzz/corpus/$name
    found=build/fuzz/corpus/$name
    log=build/fuzz/logs/$name.log
    mkdir -p "$found"
    if [ ! -x "$bin" ]; then
        echo "fuzz $name: FAILED (no $bin: make fuzz-build)"
        failed=$((failed + 1))
        continue
    fi
    before=$(ls build/fuzz/crashes | wc -l)
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 -artifact_prefix="build/fuzz/crashes/$name-" \
        "$found" "$seeds" >"$log" 2>&1
    rc=$?
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
    kept=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
    if [ -z "$kept" ] && [ "$(ls build/fuzz/crashes | wc -l)" -gt "$before" ]; then
        kept=build/fuzz/crashes/$(ls -t build/fuzz/crashes | head -n 1)
    fi
    if [ $rc -eq 0 ] && [ -z "$kept" ]; then
        echo "fuzz $name: ok (${runs:-?} runs in ${seconds}s, corpus $(ls "$found" | wc -l) new + $(ls "$seeds" | wc -l) seeds)"
        passed=$((passed + 1))
    else
        echo "fuzz $name: FAILED (exit $rc after ${runs:-?} runs); input kept at ${kept:-?}, log $log"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$log" | head -n 5 | sed 's/^/    /'
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
