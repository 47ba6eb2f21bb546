#!/usr/bin/env bash
# bench/run.sh [OUT_DIR]: the benchmarks, written as JSON (default OUT_DIR: bench/results).
#   engine.json      decode/judge cost, engine overhead, spec vs small/base bounds (bench_engine)
#   specdecode.json  token-level drafting, ours vs llama.cpp's llama-speculative-simple, for a
#                    high-agreement pair (the base model and its Q8_0 copy) and a low-agreement
#                    pair (two unrelated random models); same prompt, greedy, same draft settings
#   remote.json      in-process vs both models behind llama-server on loopback (bench_remote.py)
# Generates its own models (random weights, real Qwen2 tokenizer) into the build tree.
#   SR_BENCH_THREADS (default 1: this 2-core machine is often shared; 2 OpenMP threads on a busy
#   core spin and lose), SR_BENCH_REPS (default 3).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bench/results}
build=${SR_BUILD_DIR:-$root/build}
threads=${SR_BENCH_THREADS:-1}
reps=${SR_BENCH_REPS:-3}
mkdir -p "$out"
"$root/scripts/build.sh" "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
prefix=$("$root/scripts/setup.sh" 2>/dev/null | tail -1)
m=$build/bench-models
mkdir -p "$m"
gen() { [ -f "$m/$1.gguf" ] || "$build/sr-genmodel" --quiet --vocab "$prefix/share/ggml-vocab-qwen2.gguf" -o "$m/$1.gguf" "${@:2}"; }
gen small --preset small --seed 1 --bias-newlines 2 --bias-digits 5
gen base  --preset base  --seed 2 --bias-newlines 2 --bias-digits 5
[ -f "$m/base-q8.gguf" ] || "$build/sr-genmodel" --quiet --quantize q8_0 --input "$m/base.gguf" -o "$m/base-q8.gguf"

echo "== bench_engine" >&2
"$build/bench/bench_engine" --small "$m/small.gguf" --base "$m/base.gguf" --threads "$threads" --reps "$reps" \
    --out "$out/engine.json" >/dev/null

echo "== token-level drafting: ours vs llama-speculative-simple" >&2
prompt="Compute 48 * 37 step by step."
n=128
results=()
for pair in "high base-q8" "low small"; do
    set -- $pair
    for pmin in 0.0 0.5; do
        ours=$("$build/bench/bench_specdecode" --draft "$m/$2.gguf" --target "$m/base.gguf" --n $n --draft-max 8 \
               --p-min $pmin --threads "$threads" --reps "$reps" --prompt "$prompt")
        best=0; acc=0
        for r in $(seq "$reps"); do
            log=$("$prefix/bin/llama-speculative-simple" -m "$m/base.gguf" -md "$m/$2.gguf" --spec-type draft-simple \
                  --spec-draft-n-max 8 --spec-draft-p-min $pmin -p "$prompt" -n $n --temp 0 -c 2048 \
                  -t "$threads" -td "$threads" 2>&1)
            tps=$(printf '%s\n' "$log" | sed -n 's/.*decoded .* speed: *\([0-9.]*\) t\/s.*/\1/p' | tail -1)
            acc=$(printf '%s\n' "$log" | sed -n 's/.*accept *= *\([0-9.]*\)%.*/\1/p' | tail -1)
            best=$(python3 -c "print(max($best, ${tps:-0}))")
        done
        results+=("$(python3 - "$ours" "$best" "$acc" "$1" <<'PY'
import json, sys
o = json.loads(sys.argv[1]); l = float(sys.argv[2]); a = float(sys.argv[3] or 0) / 100
o["pair"] = sys.argv[4]
o["llama_speculative_simple"] = {"tok_per_s_best_of_reps": l, "acceptance": a}
o["ours_over_llama"] = round(o["spec_tok_per_s"] / l, 3) if l else None
print(json.dumps(o))
PY
)")
        echo "  $1 agreement, p_min $pmin: $(echo "${results[-1]}" | python3 -c 'import json,sys; o=json.load(sys.stdin); print("plain %.1f tok/s, ours %.1f (acc %.2f), llama.cpp %.1f (acc %.2f), ours/llama %.3f" % (o["plain_tok_per_s"], o["spec_tok_per_s"], o["acceptance"], o["llama_speculative_simple"]["tok_per_s_best_of_reps"], o["llama_speculative_simple"]["acceptance"], o["ours_over_llama"] or 0))')" >&2
    done
done
printf '%s\n' "${results[@]}" | python3 -c 'import json,sys; print(json.dumps([json.loads(l) for l in sys.stdin], indent=1))' >"$out/specdecode.json"
echo "== remote backend: in-process vs both models on llama-server (loopback)" >&2
python3 "$root/bench/bench_remote.py" --build "$build" --small "$m/small.gguf" --base "$m/base.gguf" \
    --threads "$threads" --reps "$reps" --out "$out/remote.json" >/dev/null
echo "wrote $out/engine.json $out/specdecode.json $out/remote.json" >&2
