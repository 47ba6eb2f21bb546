#!/usr/bin/env bash
# demo.sh [N]: the main job on the embedded default. Builds everything (first run: several
# minutes), trains the small/base reasoning pair on the CPU on first use (scripts/pair.sh: about
# 20 minutes on 2 idle cores, progress bar with ETA; budgets in optimizer steps, so the same key
# gives the same files on any machine; cached in ~/.cache/specreason/pair/ and reused afterwards), streams one SpecReason run on a held-out problem, then runs base only, small only
# and SpecReason (threshold 7, greedy) side by side on N held-out problems (default 30) and prints
# accuracy, latency and acceptance (bench/bench_pair.sh), twice: the pair as trained (it fits in
# the CPU caches, where judging a step costs about as much as writing it: JSON in
# build/bench_pair.json) and the same pair padded with inert feed-forward units to 100 MB / 13 MB,
# whose decoding streams weights as real models do (build/bench_pair_padded.json).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SR_BUILD_DIR:-$root/build}
n=${1:-30}
case "$n" in ''|*[!0-9]*) echo "usage: demo.sh [N held-out problems]" >&2; exit 2 ;; esac
"$root/scripts/build.sh" "$build" >&2
mapfile -t pair < <(SR_BUILD_DIR=$build "$root/scripts/pair.sh")
[ ${#pair[@]} -eq 2 ] || { echo "demo.sh: training the pair failed" >&2; exit 1; }
dir=$(dirname "${pair[0]}")
read -r problem judge_prompt < <(python3 - "$dir" <<'PY'
import json, os, sys
d = sys.argv[1]
meta = json.load(open(os.path.join(d, "meta.json")))
first = json.loads(open(os.path.join(d, "heldout.jsonl")).readline())
print(first["problem"], meta["judge_prompt"])
PY
)
echo "== SpecReason on a held-out problem: the small model drafts each step, the base model scores it"
echo "   (0-9, accepted at >= 7) and rewrites the steps it rejects"
"$build/specreason" --small "${pair[0]}" --base "${pair[1]}" --template raw --judge-prompt "$judge_prompt" \
    --judge-prefill "" --greedy --threads 1 --ctx 512 --budget 256 --max-step-tokens 32 --max-answer-tokens 16 \
    -p "$problem"
echo
echo "== base only, small only and SpecReason side by side on $n held-out problems: the pair as trained"
SR_BUILD_DIR=$build "$root/bench/bench_pair.sh" "$build/bench_pair.json" "$n"
echo
echo "== the same, with the pair padded to a real model's weight traffic (same outputs, memory-bound decoding)"
SR_BUILD_DIR=$build SR_PAIR_PAD=${SR_PAIR_PAD:-8192,16384} "$root/bench/bench_pair.sh" "$build/bench_pair_padded.json" "$n"
