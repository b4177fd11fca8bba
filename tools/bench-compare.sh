#!/usr/bin/env bash
# Plugin sizes and the gateway benchmark before and after a change, measured in one run
# (`make bench-compare`, issue 14): e2e/results/refactor-cost.md.
#
#   tools/bench-compare.sh [BEFORE_REV] [-- bench-gateway options...]
#
# BEFORE_REV (default 5596f6b, the tree before the thin-adapter refactor) is checked out as a
# detached git worktree outside the checkout (BENCH_BEFORE_DIR, default ../bench-before) and its
# three plugins are built there with its own target dir (BENCH_BEFORE_TARGET, default
# ../bench-before-target: its lockfile differs from the current one). The current tree's plugins
# are built with the same command into the usual target dir. Both sets are copied aside
# (target/bench-compare/{before,after}) so a rebuild during the run cannot swap them, and
# bench-gateway runs every variant with both, alternating round by round.
# Options after `--` go to bench-gateway, e.g. `-- --rounds 1 --seconds 1 --workers 1`.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

before_rev="5596f6b"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then before_rev="$1"; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
bench_args=("$@")

parent="$(dirname "$root")"
before_dir="${BENCH_BEFORE_DIR:-$parent/bench-before}"
before_target="${BENCH_BEFORE_TARGET:-$parent/bench-before-target}"
profile="${PROFILE:-native}"
out="${BENCH_COMPARE_OUT:-$root/e2e/results/refactor-cost.md}"
plugins=(-p infergate-auth -p infergate-ratelimit -p infergate-affinity)
build_cmd="cargo build --release --target wasm32-wasip1 ${plugins[*]}"

say() { echo "bench-compare: $*" >&2; }

rev="$(git rev-parse --verify --quiet "$before_rev^{commit}")" || {
  echo "bench-compare: BEFORE_REV \`$before_rev\` is not a commit of $root" >&2
  exit 2
}
short_before="$(git rev-parse --short "$rev")"

# 1. The before tree: a detached worktree of this repository at BEFORE_REV.
if [ -e "$before_dir" ]; then
  common="$(git -C "$before_dir" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)"
  if [ "$common" != "$(git rev-parse --path-format=absolute --git-common-dir)" ]; then
    echo "bench-compare: $before_dir exists and is not a worktree of $root (set BENCH_BEFORE_DIR)" >&2
    exit 2
  fi
  if [ "$(git -C "$before_dir" rev-parse HEAD)" != "$rev" ]; then
    say "moving the worktree $before_dir to $short_before"
    git -C "$before_dir" checkout --quiet --detach "$rev"
  fi
else
  say "adding a detached worktree of $short_before at $before_dir"
  git worktree add --quiet --detach "$before_dir" "$rev"
fi

# 2. Both plugin sets, the same build command; then bench-gateway and host-shim (the current tree).
say "building the plugins of $short_before (CARGO_TARGET_DIR=$before_target)"
(cd "$before_dir" && CARGO_TARGET_DIR="$before_target" nice -n 15 $build_cmd)
say "building the current tree's plugins, bench-gateway and host-shim"
nice -n 15 $build_cmd
nice -n 15 cargo build --profile "$profile" -p infergate-e2e --bin bench-gateway -p host-shim --bin host-shim

# The same build command only means the same build if the release profile (root Cargo.toml)
# and the cargo config agree; the results say when they do not.
release_profile() { awk '/^\[profile\.release\]/{on=1; print; next} /^\[/{on=0} on && !/^[[:space:]]*(#|$)/' ; }
profile_note=""
if [ "$(git show "$rev:Cargo.toml" | release_profile)" != "$(release_profile < Cargo.toml)" ] \
   || ! diff -q <(git show "$rev:.cargo/config.toml" 2>/dev/null) <(cat .cargo/config.toml 2>/dev/null) >/dev/null; then
  profile_note=" **The release profile or .cargo/config.toml differs between the two trees**: the sizes mix the refactor with the build settings."
fi

after_rev="$(git rev-parse --short HEAD)"
after_label="after ($after_rev)"
if [ -n "$(git status --porcelain -- plugins Cargo.toml Cargo.lock)" ]; then
  after_label="after ($after_rev+uncommitted)"
fi
snap="$root/target/bench-compare"
rm -rf "$snap/before" "$snap/after"
mkdir -p "$snap/before" "$snap/after"
for p in auth ratelimit affinity; do
  cp "$before_target/wasm32-wasip1/release/infergate_$p.wasm" "$snap/before/"
  cp "$root/target/wasm32-wasip1/release/infergate_$p.wasm" "$snap/after/"
done

# 3. One bench-gateway run over both sets.
body="$(mktemp)"
trap 'rm -f "$body"' EXIT
started="$(date -u +%FT%TZ)"
load_start="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || true)"
t0=$(date +%s)
say "running bench-gateway: before ($short_before) vs $after_label ${bench_args[*]:-}"
"$root/target/$profile/bench-gateway" \
  --compare-wasm-dir "$snap/before" --compare-label before \
  --wasm-dir "$snap/after" --label after \
  --out "$body" "${bench_args[@]}"
minutes=$(( ($(date +%s) - t0 + 59) / 60 ))

{
  echo "# The refactor's cost: plugins and gateway before and after (issue 14)"
  echo
  echo "Before: \`$short_before\` ($(git log -1 --format=%cs "$rev")$([ "$short_before" = "$(git rev-parse --short 5596f6b 2>/dev/null)" ] && echo ", the tree before issue 14's thin-adapter refactor"))."
  echo "After: \`$after_rev\` ($(git log -1 --format=%cs HEAD))$([ "${after_label#*+}" != "$after_label" ] && echo ", with uncommitted changes in plugins/ or Cargo files at the time")."
  echo "Both plugin sets built with \`$build_cmd\` (the before tree in a detached worktree with its own target dir; $(rustc --version)).$profile_note Then measured in one \`bench-gateway\` run started $started (load average then: $load_start), ~$minutes min."
  echo
  echo "Command: \`make bench-compare\` = \`tools/bench-compare.sh $before_rev${bench_args[*]:+ -- ${bench_args[*]}}\`"
  echo
  cat "$body"
} > "$out"
say "written to $out"
