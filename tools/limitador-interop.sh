#!/usr/bin/env bash
# Global rate limits against Kuadrant's real Limitador (make interop-limitador; not in make test).
#
# Builds limitador-server from its source (tag $LIMITADOR_TAG) outside this repository, with
# Debian's librocksdb instead of compiling RocksDB (the long part of its build), then runs the
# global-mode suites (tests/tests/global.rs, tests/tests/global_limitador.rs) with
# INFERGATE_LIMITADOR_BIN pointing at it: Limitador serves limits generated from each test's
# ratelimit configuration (e2e/src/limitador.rs) and counts in a real Redis.
#
# Environment:
#   LIMITADOR_TAG      release tag to build (default v2.4.0)
#   LIMITADOR_SRC      a Kuadrant/limitador checkout to use (default: cloned into $LIMITADOR_WORK)
#   LIMITADOR_WORK     where the source, the build and the shim go (default target/limitador)
#   LIMITADOR_BIN      skip the build and use this limitador-server
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TAG="${LIMITADOR_TAG:-v2.4.0}"
WORK="${LIMITADOR_WORK:-$ROOT/target/limitador}"
mkdir -p "$WORK"

if [[ -z "${LIMITADOR_BIN:-}" ]]; then
  # Build dependencies from Debian: protoc for its gRPC code, librocksdb + libclang for
  # librocksdb-sys's bindings, libssl for openssl-sys (vendored OpenSSL is skipped).
  need=()
  command -v protoc >/dev/null || need+=(protobuf-compiler)
  [[ -e /usr/lib/x86_64-linux-gnu/librocksdb.so || -e /usr/lib/librocksdb.so ]] || need+=(librocksdb-dev)
  compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" >/dev/null || need+=(libclang-dev)
  [[ -e /usr/include/openssl/ssl.h ]] || need+=(libssl-dev)
  command -v redis-server >/dev/null || need+=(redis-server)
  if ((${#need[@]})); then
    echo "installing ${need[*]}"
    if [[ $(id -u) -eq 0 ]]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
    else
      sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
    fi
  fi

  SRC="${LIMITADOR_SRC:-$WORK/src-$TAG}"
  if [[ ! -d "$SRC" ]]; then
    git clone --quiet --depth 1 --branch "$TAG" https://github.com/Kuadrant/limitador "$SRC"
  fi

  # librocksdb-sys 0.16 is generated from RocksDB 8.10's C header and references
  # rocksdb_write_buffer_manager_destroy, which Debian 12's RocksDB 7.8 lacks. Nothing can
  # create a write buffer manager (its constructor is missing too and unreferenced), so the
  # symbol is unreachable: a stub that aborts satisfies the linker. Only the final binary
  # links it (cargo rustc), so the dependencies' build is not invalidated.
  cat > "$WORK/rocksdb_compat.c" <<'EOF'
#include <stdlib.h>
void rocksdb_write_buffer_manager_destroy(void *wbm) { (void)wbm; abort(); }
EOF
  cc -c -O2 -fPIC -o "$WORK/rocksdb_compat.o" "$WORK/rocksdb_compat.c"

  LIBDIR=/usr/lib/x86_64-linux-gnu
  [[ -e $LIBDIR/librocksdb.so ]] || LIBDIR=/usr/lib
  # Its own target directory: it shares nothing with the workspace. No LTO and parallel
  # codegen: the release profile's fat LTO triples the build for no test benefit.
  (cd "$SRC" && CARGO_TARGET_DIR="$WORK/target" ROCKSDB_LIB_DIR="$LIBDIR" OPENSSL_NO_VENDOR=1 \
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo rustc --release -p limitador-server --bin limitador-server \
      -- -C "link-arg=$WORK/rocksdb_compat.o")
  LIMITADOR_BIN="$WORK/target/release/limitador-server"
fi

"$LIMITADOR_BIN" --version
cd "$ROOT"
cargo build --release --target wasm32-wasip1 -p infergate-auth -p infergate-ratelimit -p infergate-affinity
status=0
INFERGATE_LIMITADOR_BIN="$LIMITADOR_BIN" \
  cargo test --profile "${PROFILE:-native}" -p infergate-tests --test global --test global_limitador \
  -- --nocapture >"$WORK/interop.log" 2>&1 || status=$?
grep -E '^test |^LIMITADOR-|^test result|panicked' "$WORK/interop.log" || true
echo "full log: $WORK/interop.log"
exit "$status"
