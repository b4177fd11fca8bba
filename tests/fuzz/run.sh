#!/usr/bin/env bash
# `make fuzz`: each target under libFuzzer (coverage-guided, stable Rust) for FUZZ_SECONDS.
#
# Coverage comes from LLVM's SanitizerCoverage pass, which stable rustc runs with
# `-Cpasses=sancov-module` (the flags cargo-fuzz passes, without its nightly-only `-Zsanitizer`).
# The build uses an explicit `--target`, so its instrumented artifacts live in
# target/<triple>/ and never replace the native ones. Overflow checks and debug assertions are
# on. Inputs found are kept in target/fuzz-corpus/<target> (the committed seeds in
# tests/fuzz/corpus are read, not written); a crash is saved under target/fuzz-artifacts/.
# Prints one line per target with libFuzzer's execution count; exits non-zero on a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
TARGETS="${FUZZ_TARGETS:-openai_request sse_usage jwt credentials_headers rls_wire plugin_config auth_callouts pick_wire endpoint_picker_config prometheus_text policy_yaml}"
FEATURES="${FUZZ_FEATURES:-libfuzzer,shim}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks=on"
cargo build --profile native --target "$TRIPLE" -p infergate-fuzz --no-default-features \
  --features "$FEATURES" --bin infergate-fuzz
BIN="target/$TRIPLE/native/infergate-fuzz"
mkdir -p target/fuzz-artifacts
status=0
printf '| target | seconds | executions | exec/s | corpus | result |\n|---|---:|---:|---:|---:|---|\n'
for t in $TARGETS; do
  work="target/fuzz-corpus/$t"
  mkdir -p "$work"
  log="target/fuzz-artifacts/$t.log"
  # -rss_limit_mb: an input that makes a parser allocate without bound fails the run.
  if FUZZ_TARGET="$t" "$BIN" "$work" "tests/fuzz/corpus/$t" \
      -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -rss_limit_mb=1024 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="target/fuzz-artifacts/$t-" >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see $log)"
    status=1
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  corpus="$(ls "$work" | wc -l)"
  printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "$SECONDS_PER_TARGET" "${runs:-?}" \
    "$(( ${runs:-0} / SECONDS_PER_TARGET ))" "$corpus" "$result"
done
exit $status
