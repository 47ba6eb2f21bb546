#!/usr/bin/env bash
# demo.sh: the main job on an embedded default. Builds everything (first run: several minutes),
# generates a small and a base test model (random weights, real Qwen2 tokenizer), and runs
# `specreason` on them: SpecReason streamed step by step, then base-only and small-only for
# comparison. Random weights write noise; the point is the mechanics and the statistics.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SR_BUILD_DIR:-$root/build}
"$root/scripts/build.sh" "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
prefix=$("$root/scripts/setup.sh" 2>/dev/null | tail -1)
models=$build/models
mkdir -p "$models"
for spec in "small 1" "base 2"; do
    set -- $spec
    [ -f "$models/$1.gguf" ] || "$build/sr-genmodel" --vocab "$prefix/share/ggml-vocab-qwen2.gguf" \
        --preset "$1" --seed "$2" --bias-newlines 4 --bias-digits 3 -o "$models/$1.gguf"
done
problem=${1:-"What is 17 * 24? Reason step by step."}
common=(--small "$models/small.gguf" --base "$models/base.gguf" --ctx 4096 --budget 256
        --max-step-tokens 32 --max-answer-tokens 32 --seed 1 -p "$problem")
echo "== SpecReason (threshold 7): small model drafts, base model judges and rewrites"
"$build/specreason" "${common[@]}" --mode spec
for mode in base small; do
    echo; echo "== $mode model alone"
    "$build/specreason" "${common[@]}" --mode $mode --quiet | tail -5
done
