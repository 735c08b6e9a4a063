#!/usr/bin/env bash
# Builds Distri (release) and runs a single node: `scripts/serve.sh [flags]`.
# Flags go to `distri serve` (see `build/release/distri serve --help`);
# with none, it listens on 127.0.0.1:7379 with data under ./distri-data.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/install-deps.sh"
cmake -S "$root" -B "$root/build/release" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDISTRI_TESTS=OFF >/dev/null
ninja -C "$root/build/release" distri
exec "$root/build/release/distri" serve "$@"
