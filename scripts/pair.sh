#!/usr/bin/env bash
# pair.sh [sr-train pair options]: prints the paths of the trained small and base GGUFs (small
# first, one per line). On first use it trains them on the CPU (about 20 minutes on 2 idle cores,
# longer on a busy machine; a progress bar with ETA on stderr) into
# ${SPECREASON_CACHE:-~/.cache/specreason}/pair/<key>/ (key = trainer version, task, settings
# hash, seed). Budgets are optimizer steps, so a key names one pair: the same files whatever the
# machine's speed or load. Later calls reuse that directory, which also holds meta.json
# (settings, sha256 of both files, training times, measured accuracies, the judge strings to
# pass to specreason) and heldout.jsonl (held-out problems). Models never go into the repository.
# Environment: SR_BUILD_DIR (a build tree with tools/train/sr-train; default: build/, built with
# scripts/build.sh if missing), SR_TRAIN (the sr-train binary itself).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${SR_TRAIN:-}
if [ -z "$bin" ]; then
    build=${SR_BUILD_DIR:-$root/build}
    bin=$build/tools/train/sr-train
    if [ ! -x "$bin" ]; then
        "$root/scripts/build.sh" "$build" >&2
    fi
fi
[ -x "$bin" ] || { echo "pair.sh: $bin was not built" >&2; exit 1; }
exec "$bin" pair "$@"
