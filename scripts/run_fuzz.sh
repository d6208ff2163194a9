#!/usr/bin/env bash
# Runs every libFuzzer target built in <build>/ (make fuzz) for <seconds> seconds each, from its seed
# corpus tests/data/fuzz/<target>/ (read-only) plus a working corpus <build>/corpus/<target>/ (grows
# between runs). Prints one line per target, "fuzz <target>: <execs> execs, <crashes> crashes"; crash
# inputs land in <build>/crashes/<target>/ and make the script fail.
# Usage: scripts/run_fuzz.sh <build> <seconds> [target...]
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "${1:?build folder}" && pwd)"
seconds="${2:?seconds}"
shift 2
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$root"/fuzz/*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

# Largest input each target mutates (the seeds fit).
declare -A max_len=([gguf]=16384 [tokenizer_json]=49152 [chat_template]=8192 [prompt_cache]=8192 [checkpoint]=8192)

export ASAN_OPTIONS="abort_on_error=1:detect_stack_use_after_return=1:allocator_may_return_null=0:handle_abort=1"
export LSAN_OPTIONS="suppressions=$root/scripts/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

failed=0
for t in "${targets[@]}"; do
  bin="$build/fuzz_$t"
  if [ ! -x "$bin" ]; then echo "fuzz $t: not built ($bin)"; failed=1; continue; fi
  corpus="$build/corpus/$t" crashes="$build/crashes/$t" log="$build/fuzz-logs/$t.log"
  mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
  touch "$crashes/.run-start"  # crash inputs of earlier runs stay, and are not counted
  "$bin" -max_total_time="$seconds" -max_len="${max_len[$t]:-4096}" -timeout=10 -rss_limit_mb=2048 \
    -malloc_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$crashes/" \
    "$corpus" "$root/tests/data/fuzz/$t" >"$log" 2>&1
  rc=$?
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  n=$(find "$crashes" -type f -newer "$crashes/.run-start" | wc -l)
  echo "fuzz $t: ${execs:-0} execs, $n crashes"
  if [ "$n" -gt 0 ] || [ "$rc" -ne 0 ]; then
    failed=1
    [ "$n" -gt 0 ] || echo "  (exit status $rc without a crash input)"
    echo "  log: $log"
    grep -m3 -E 'ERROR: |runtime error|terminate called|SUMMARY' "$log" | sed 's/^/  /'
  fi
done
exit $failed
