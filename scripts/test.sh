#!/usr/bin/env bash
# test.sh: the full test suite, as CI runs it. Installs what is missing, builds llama.cpp into
# the cache on first use, then builds and tests the project twice: a release build with
# -Werror, and an AddressSanitizer + UndefinedBehaviorSanitizer build. Test models are generated
# at test time into the build trees.
#   SR_SKIP_SANITIZE=1  skip the sanitizer pass
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

echo "== release build (-Werror)"
scripts/build.sh "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSR_WERROR=ON
(cd build && ctest --output-on-failure --timeout 900)

if [ "${SR_SKIP_SANITIZE:-0}" != 1 ]; then
    echo "== sanitizer build (address,undefined)"
    scripts/build.sh "$root/build-asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSR_WERROR=ON \
        -DSR_SANITIZE=address,undefined -DSR_BUILD_BENCH=OFF
    # SR_TEST_QUICK: the model tests run one variant of each check (the release pass ran them all).
    (cd build-asan && SR_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --output-on-failure --timeout 1800)
fi
