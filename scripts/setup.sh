#!/usr/bin/env bash
# setup.sh: install the system packages specreason needs, obtain the pinned llama.cpp and build it
# once into a cache directory outside the repository.
#
# The cache is keyed by commit and build options, so a second run reuses it (no recompilation) and
# deleting it triggers a clean rebuild. Prints the install prefix on the last line of stdout.
#
# Environment:
#   LLAMA_CPP_SRC      an existing checkout of the pinned commit (used instead of the npm bundle)
#   SPECREASON_CACHE   cache root (default: $XDG_CACHE_HOME/specreason or ~/.cache/specreason)
#   SR_CUDA=1          build llama.cpp with GGML_CUDA=ON
#   SR_RPC=0           build llama.cpp without GGML_RPC (default ON: ggml-rpc-server + RPC devices)
#   SR_NATIVE=0        build with GGML_NATIVE=OFF (portable binaries)
#   SR_JOBS=N          parallel build jobs (default: nproc)
#   SR_NO_APT=1        never call apt-get (fail instead if something is missing)
set -euo pipefail

LLAMA_COMMIT=80fb11ac73e66d89eae2c6a91d8a77428fa733ed
NPM_PKG=node-llama-cpp@3.21.1

say()  { printf '[setup] %s\n' "$*" >&2; }
die()  { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

CACHE=${SPECREASON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/specreason}
JOBS=${SR_JOBS:-$(nproc 2>/dev/null || echo 2)}
CUDA=${SR_CUDA:-0}; RPC=${SR_RPC:-1}; NATIVE=${SR_NATIVE:-1}

# ---------------------------------------------------------------- system packages
need_pkgs=()
have() { command -v "$1" >/dev/null 2>&1; }
have cc    || need_pkgs+=(build-essential)
have c++   || need_pkgs+=(g++)
have cmake || need_pkgs+=(cmake)
have git   || need_pkgs+=(git)
have ninja || need_pkgs+=(ninja-build)
have flock || need_pkgs+=(util-linux)
have npm   || need_pkgs+=(npm)
have tar   || need_pkgs+=(tar)
have curl  || need_pkgs+=(curl)          # used by the server tests as a real HTTP client
have python3 || need_pkgs+=(python3)     # used by tests to parse JSON/SVG output
# headless browser of the page tests (tests/test_web.py); Debian's package is named chromium
have chromium || have chromium-browser || need_pkgs+=(chromium)
# Libraries of the server and the remote backend (headers + pkg-config files), by Debian package name.
have_deb() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for p in pkg-config libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev; do
    have_deb "$p" || need_pkgs+=("$p")
done
if ! echo 'int main(void){return 0;}' | cc -x c - -fopenmp -o /dev/null >/dev/null 2>&1; then
    need_pkgs+=(libgomp1)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    [ "${SR_NO_APT:-0}" = 1 ] && die "missing packages: ${need_pkgs[*]} (SR_NO_APT=1 set)"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    say "installing Debian packages: ${need_pkgs[*]}"
    $SUDO apt-get update -qq >&2 || die "apt-get update failed (is the Debian registry reachable?)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >&2 \
        || die "apt-get install ${need_pkgs[*]} failed"
fi

mkdir -p "$CACHE" || die "cannot create cache directory $CACHE"
# One setup at a time per cache: a second caller waits for the first one's build, then reuses it.
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
    say "another setup is running on $CACHE; waiting for it"
    flock 9
fi
avail_kb=$(df -Pk "$CACHE" | awk 'NR==2 {print $4}')
[ "${avail_kb:-0}" -gt 2000000 ] || die "less than 2 GB free in $CACHE (disk full?)"

# ---------------------------------------------------------------- llama.cpp source
SRC="$CACHE/llama.cpp-src-${LLAMA_COMMIT:0:12}"
verify_src() {   # $1 = checkout; succeeds iff it is exactly the pinned commit
    local head
    head=$(git -C "$1" rev-parse HEAD 2>/dev/null) || return 1
    [ "$head" = "$LLAMA_COMMIT" ]
}
if [ -n "${LLAMA_CPP_SRC:-}" ]; then
    verify_src "$LLAMA_CPP_SRC" || die "LLAMA_CPP_SRC=$LLAMA_CPP_SRC is not a git checkout of commit $LLAMA_COMMIT"
    SRC=$LLAMA_CPP_SRC
    say "using llama.cpp from LLAMA_CPP_SRC=$SRC"
elif verify_src "$SRC"; then
    say "llama.cpp source cached at $SRC"
else
    rm -rf "$SRC" "$SRC.tmp"
    tmp=$(mktemp -d)
    say "fetching llama.cpp $LLAMA_COMMIT from the npm package $NPM_PKG"
    (cd "$tmp" && npm pack --silent "$NPM_PKG" >/dev/null) || die "npm pack $NPM_PKG failed (is the npm registry reachable?)"
    tar -xzf "$tmp"/node-llama-cpp-*.tgz -C "$tmp" package/llama/gitRelease.bundle \
        || die "the npm package holds no llama/gitRelease.bundle"
    git -c advice.detachedHead=false clone -q "$tmp/package/llama/gitRelease.bundle" "$SRC.tmp" >&2 || die "cloning the git bundle failed"
    git -C "$SRC.tmp" -c advice.detachedHead=false checkout -q "$LLAMA_COMMIT" 2>/dev/null || die "the bundle does not contain commit $LLAMA_COMMIT"
    verify_src "$SRC.tmp" || die "commit mismatch after checkout (wanted $LLAMA_COMMIT)"
    mv "$SRC.tmp" "$SRC"
    rm -rf "$tmp"
fi
[ -f "$SRC/models/ggml-vocab-qwen2.gguf" ] || die "$SRC/models/ggml-vocab-qwen2.gguf is missing"

# ---------------------------------------------------------------- build (keyed by commit + options)
# AMX off: the pinned ggml's AMX matrix kernels crash on Sapphire Rapids-class CPUs
# (ggml_backend_amx_mul_mat segfaults on Q8_0 weights; llama.cpp issue 20824, closed unfixed).
# With GGML_NATIVE=ON, -march=native would turn them on wherever the CPU has AMX; explicit
# -mno-amx-* flags win over -march in GCC and clang, so the build is the same on every x86 host.
AMX_FLAGS=""
case "$(uname -m)" in x86_64|amd64) AMX_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" ;; esac
KEY="${LLAMA_COMMIT:0:12}-native${NATIVE}-cuda${CUDA}-rpc${RPC}-amx0"
PREFIX="$CACHE/llama.cpp-$KEY"
STAMP="$PREFIX/.specreason-complete"
if [ -f "$STAMP" ]; then
    say "llama.cpp build cached at $PREFIX (no recompilation)"
else
    rm -rf "$PREFIX"   # a half-finished build directory is kept: ninja/make resume it
    opts=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
          -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_APP=OFF
          -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON
          -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
          -DGGML_NATIVE=$([ "$NATIVE" = 1 ] && echo ON || echo OFF)
          -DGGML_CUDA=$([ "$CUDA" = 1 ] && echo ON || echo OFF)
          -DGGML_RPC=$([ "$RPC" = 1 ] && echo ON || echo OFF)
          -DCMAKE_POSITION_INDEPENDENT_CODE=ON
          "-DCMAKE_C_FLAGS=$AMX_FLAGS" "-DCMAKE_CXX_FLAGS=$AMX_FLAGS"
          "-DCMAKE_INSTALL_PREFIX=$PREFIX")
    gen=(); have ninja && gen=(-G Ninja)
    targets=(llama llama-server llama-speculative-simple)
    [ "$RPC" = 1 ] && targets+=(ggml-rpc-server)
    say "building llama.cpp ($KEY) with $JOBS jobs; this takes several minutes the first time"
    cmake -S "$SRC" -B "$PREFIX.build" "${gen[@]}" "${opts[@]}" >"$CACHE/build-$KEY.log" 2>&1 \
        || die "llama.cpp configure failed; see $CACHE/build-$KEY.log"
    cmake --build "$PREFIX.build" -j "$JOBS" --target "${targets[@]}" >>"$CACHE/build-$KEY.log" 2>&1 \
        || die "llama.cpp build failed; see $CACHE/build-$KEY.log"
    # Install only the libraries, headers and CMake packages: a full install wants every tool
    # built. ggml installs from its own directory; the top level's own rules (libllama, llama.h,
    # llama-config.cmake) run with CMAKE_INSTALL_LOCAL_ONLY, which skips the tool directories.
    cmake --install "$PREFIX.build/ggml" >>"$CACHE/build-$KEY.log" 2>&1 \
        || die "llama.cpp install (ggml) failed; see $CACHE/build-$KEY.log"
    cmake -DCMAKE_INSTALL_LOCAL_ONLY=1 -P "$PREFIX.build/cmake_install.cmake" >>"$CACHE/build-$KEY.log" 2>&1 \
        || die "llama.cpp install (llama) failed; see $CACHE/build-$KEY.log"
    mkdir -p "$PREFIX/bin" "$PREFIX/share"
    for t in "${targets[@]}"; do
        [ -x "$PREFIX.build/bin/$t" ] && cp "$PREFIX.build/bin/$t" "$PREFIX/bin/"
    done
    [ -f "$PREFIX/lib/cmake/llama/llama-config.cmake" ] || die "install produced no llama CMake package"
    rm -rf "$PREFIX.build"
    touch "$STAMP"
    say "llama.cpp built and cached at $PREFIX"
fi
# Tokenizer files for test models: the real Qwen2 vocabulary, and GPT-2's as an incompatible one.
mkdir -p "$PREFIX/share"
for v in qwen2 gpt-2; do
    [ -f "$PREFIX/share/ggml-vocab-$v.gguf" ] || cp "$SRC/models/ggml-vocab-$v.gguf" "$PREFIX/share/" \
        || die "cannot copy ggml-vocab-$v.gguf"
done
echo "$PREFIX"
