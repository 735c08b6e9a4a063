#!/usr/bin/env bash
# Installs what building (and, with --test, testing) Distri needs on Debian.
# Safe to run again: it installs only what is missing.
#
#   scripts/install-deps.sh          build dependencies (C++ toolchain, libuv, OpenSSL, xxHash,
#                                    a Rust toolchain for src/replication/raft_capi)
#   scripts/install-deps.sh --test   plus clang (fuzzing), GoogleTest, redis tools, Python test venv,
#                                    Go (the fault suite's linearizability checker)
#   scripts/install-deps.sh --bench  plus what the side-by-side runs start: Debian's etcd
#                                    (etcd-server, 3.4) and strace for bench/cluster_compare.py
#                                    (it needs Go too, bench/loadgen), nats-server for
#                                    bench/nats_compare.py (one node, or --nodes 3).
#                                    bench/wal_compare.py's raft-engine side
#                                    (bench/raft_engine_bench) is built with the same Rust
#                                    toolchain as raft_capi, installed below; only a bench
#                                    builds it, never CMake or the test command
#   (--test and --bench may be given together)
set -euo pipefail

want_test=0
want_bench=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    --bench) want_bench=1 ;;
    *) echo "usage: $0 [--test] [--bench]" >&2; exit 2 ;;
  esac
done
root="$(cd "$(dirname "$0")/.." && pwd)"

packages=(build-essential cmake ninja-build pkg-config libuv1-dev libssl-dev libxxhash-dev
          libhttp-parser-dev nlohmann-json3-dev)
if [[ $want_test == 1 ]]; then
  packages+=(clang libclang-rt-14-dev libgtest-dev libgmock-dev libbenchmark-dev
             redis-server redis-tools python3 python3-venv chromium)
  # Go for the fault suite's linearizability checker (tests/linearizability, built with
  # `go build`; its module, Porcupine, comes from the Go module proxy, pinned by go.sum).
  # Any Go >= 1.19 builds it, so a toolchain already on PATH (these machines have Go 1.26)
  # is kept: Debian's golang-go (1.19 on bookworm) is installed only when there is none.
  command -v go >/dev/null || packages+=(golang-go)
  # Node.js for the browser tests (any packaging of it will do: keep one already there).
  command -v node >/dev/null || packages+=(nodejs)
  command -v npm >/dev/null || packages+=(npm)
fi
if [[ $want_bench == 1 ]]; then
  # etcd-server's post-install script would start the Debian service where systemd runs;
  # the benchmark starts its own three etcd processes on free ports and never uses it.
  # nats-server: the messaging comparisons start their own (one, or three with routes).
  packages+=(etcd-server strace redis-tools nats-server)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Rust, for src/replication/raft_capi (TiKV's raft crate; CMake runs cargo, which fetches
# the crates pinned in Cargo.lock from crates.io on the first build). Debian bookworm's
# cargo/rustc 1.63 are too old for those crates (rustc >= 1.71) and for a version-4
# Cargo.lock (cargo >= 1.78), so when no recent enough cargo is on PATH or in ~/.cargo/bin,
# rustup's official installer puts the stable toolchain in ~/.cargo (CMake looks there).
rust_min_minor=78
cargo_ok() {
  local v
  v="$("$1" --version 2>/dev/null | awk '{print $2}')" || return 1
  [[ "${v%%.*}" == 1 ]] || return 1
  v="${v#1.}"
  [[ "${v%%.*}" -ge $rust_min_minor ]]
}
if ! { command -v cargo >/dev/null && cargo_ok cargo; } && ! cargo_ok "$HOME/.cargo/bin/cargo"; then
  echo "installing the Rust toolchain (rustup, stable, minimal profile) into ~/.cargo"
  command -v curl >/dev/null || {
    sudo_cmd=""
    [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq curl ca-certificates >/dev/null
  }
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y --profile minimal --default-toolchain stable --no-modify-path
fi

if [[ $want_bench == 1 ]] && ! command -v go >/dev/null; then
  # bench/loadgen's go.mod needs a recent Go (Debian bookworm's golang-go 1.19 is too old);
  # the project's machines carry one on PATH.
  echo "warning: no 'go' on PATH; bench/cluster_compare.py builds bench/loadgen with Go" >&2
fi

if [[ $want_test == 1 ]]; then
  venv="$root/build/venv"
  if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c "import redis, pytest, pytest_timeout" 2>/dev/null; then
    echo "installing Python test packages into $venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q -r "$root/tests/requirements.txt"
  fi
  # The Python client, editable so the tests always run the checked-out code.
  if ! "$venv/bin/python" -c "import distri, hiredis, tqdm" 2>/dev/null; then
    echo "installing the Python client (clients/python) into $venv"
    "$venv/bin/pip" install -q -e "$root/clients/python[test]"
  fi
  # Playwright (playwright-core only: it drives Debian's chromium, downloads no browser).
  if [[ ! -f "$root/tests/browser/node_modules/playwright-core/package.json" ]]; then
    echo "installing the browser tests' npm packages into tests/browser/node_modules"
    (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
