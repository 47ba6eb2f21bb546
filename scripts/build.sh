#!/usr/bin/env bash
# build.sh [BUILD_DIR] [extra cmake args...]: configure and build specreason against the cached
# llama.cpp (scripts/setup.sh builds it on first use). Prints nothing but progress on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/build}
[ $# -gt 0 ] && shift
prefix=$("$root/scripts/setup.sh" | tail -1)
gen=(); command -v ninja >/dev/null 2>&1 && gen=(-G Ninja)
# llama_DIR/ggml_DIR named explicitly: a build tree configured against an older cache key then
# switches to the current one (find_package would keep the cached directory otherwise).
pkg=(-DCMAKE_PREFIX_PATH="$prefix" -Dllama_DIR="$prefix/lib/cmake/llama" -Dggml_DIR="$prefix/lib/cmake/ggml")
if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$dir" "${gen[@]}" "${pkg[@]}" "$@" >&2
else
    cmake -S "$root" -B "$dir" "${pkg[@]}" "$@" >/dev/null
fi
cmake --build "$dir" -j "${SR_JOBS:-$(nproc)}" >&2
