#!/usr/bin/env bash
# bench_policy.sh OUT.json [N]: the controller's policies side by side -- base only, SpecReason
# with --policy always (the reference: speculate and judge every step) and --policy auto (the
# cost-aware controller) -- on N held-out problems of the trained pair (default 100), greedy,
# threshold 7, in ONE specreason-eval process per pair (one engine: auto's cost model and gate
# are learned across the problems, as a server would), the three modes per problem in turn so
# machine load hits them alike. Writes one JSON object to OUT.json and a summary to stderr:
#   per mode: accuracy, latency mean/median (the run's own t_total_ms), speed vs base
#   auto: steps speculated / written by the base model / probes, drafts accepted unjudged,
#     audits and disagreements, the learned cost model (from the last run) next to the costs
#     bench_cost measures directly for the same GGUFs, predicted vs measured speedup
#   the gap in accuracy points between auto and always
# Regimes: the pair as trained, and with SR_PAIR_PAD=SMALL_FF,BASE_FF (as bench_pair.sh: padded
# copies via `sr-train pad`, written once next to the pair) the same pair with a bigger model's
# weight traffic. SR_POLICY_GEN=1 instead runs a generated random-weight pair on which
# speculation loses badly (every draft rejected), on N problems of data/math500.jsonl.
# Environment: SR_BUILD_DIR (default build/), SR_PAIR_DIR (default: the newest pair directory
# with meta.json under ${SPECREASON_CACHE:-~/.cache/specreason}/pair/), SR_BENCH_THREADS (1),
# SR_BENCH_THREADS_BATCH (= threads), SR_POLICY_FLAGS (extra specreason-eval flags).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bench_policy.sh OUT.json [N]" >&2; exit 2; }
out=$1
n=${2:-100}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SR_BUILD_DIR:-$root/build}
ev=$build/specreason-eval
cost=$build/bench/bench_cost
threads=${SR_BENCH_THREADS:-1}
threads_batch=${SR_BENCH_THREADS_BATCH:-$threads}
[ -x "$ev" ] && [ -x "$cost" ] || { echo "bench_policy.sh: build first ($ev, $cost)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--temp 0 --threads "$threads" --threads-batch "$threads_batch" -t 7 -l "$n" --progress lines)

if [ "${SR_POLICY_GEN:-0}" = 1 ]; then
    gen=$build/sr-genmodel
    vocab=$(sed -n 's/^llama_DIR:[A-Z]*=//p' "$build/CMakeCache.txt")/../../../share/ggml-vocab-qwen2.gguf
    [ -f "$vocab" ] || { echo "bench_policy.sh: $vocab not found" >&2; exit 1; }
    small=$tmp/gen-small.gguf
    base=$tmp/gen-base.gguf
    "$gen" --quiet --vocab "$vocab" -o "$small" --preset small --seed 11
    "$gen" --quiet --vocab "$vocab" -o "$base" --preset base --seed 12
    data=$root/data/math500.jsonl
    flags=(--max-step-tokens 24 --budget 96 --max-answer-tokens 8 --ctx 1024)
    label=generated
else
    . "$(dirname "$0")/pair_models.sh"
    pair_models bench_policy.sh "$build"
    data=$dir/heldout.jsonl
    flags=(--template raw --judge-prompt "$jp" --judge-prefill "$jf" --ctx 512 --budget 256 --max-step-tokens 32
           --max-answer-tokens 16)
fi

key=generated
[ "${SR_POLICY_GEN:-0}" = 1 ] || key=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key"])' "$dir/meta.json")
echo "[bench_policy] $label ($key): $small + $base, $n problems" >&2
load0=$(cut -d' ' -f1-3 /proc/loadavg)
"$ev" --small "$small" --base "$base" -d "$data" -m base,spec-always,spec-auto "${common[@]}" "${flags[@]}" \
    ${SR_POLICY_FLAGS:-} -o "$tmp/eval" >"$tmp/table.txt"
load1=$(cut -d' ' -f1-3 /proc/loadavg)
"$cost" --threads "$threads" --threads-batch "$threads_batch" "$small" "$base" >"$tmp/cost.json"

exec python3 - "$out" "$tmp/eval/results.jsonl" "$tmp/cost.json" "$label" "$small" "$base" "$key" "$load0" "$load1" \
    "${SR_POLICY_FLAGS:-}" <<'PY'
import json, statistics, sys
out, results, costf, label, small, base, key, load0, load1, extra = sys.argv[1:11]
recs = [json.loads(l) for l in open(results) if l.strip()]
modes = ["base", "spec-always", "spec-auto"]
by = {m: [r for r in recs if r["mode"] == m] for m in modes}
res = {"pair": label, "key": key, "small": small, "base": base, "n_problems": len(by["base"]), "threshold": 7,
       "extra_flags": extra, "loadavg_before": load0, "loadavg_after": load1, "modes": {}}
for m in modes:
    rs = by[m]
    lat = [r["stats"]["t_total_ms"] for r in rs]
    st = [r["stats"] for r in rs]
    d = {"accuracy": sum(r["correct"] for r in rs) / max(1, len(rs)),
         "latency_ms_mean": statistics.mean(lat), "latency_ms_median": statistics.median(lat),
         "steps": sum(s["steps"] for s in st), "judged": sum(s["judged"] for s in st),
         "steps_small": sum(s["steps_small"] for s in st)}
    if m == "spec-auto":
        for k in ["ctl_spec", "ctl_base", "ctl_probes", "unjudged", "audits", "audit_disagree", "catchup_tokens"]:
            d[k] = sum(s[k] for s in st)
        d["t_catchup_ms"] = sum(s["t_catchup_ms"] for s in st)
        d["ctl_model_last"] = st[-1]["ctl_model"]
        pred = [s["ctl_model"]["predicted_speedup"] for s in st if s["ctl_model"]["predicted_speedup"]]
        meas = [s["ctl_model"]["measured_speedup"] for s in st if s["ctl_model"]["measured_speedup"]]
        d["predicted_speedup_mean"] = statistics.mean(pred) if pred else None
        # The same text as policy always (greedy): what the gate and the base model's own steps changed.
        alw = {r["id"]: r["text"] for r in by["spec-always"]}
        d["same_text_as_always"] = sum(r["text"] == alw.get(r["id"]) for r in rs)
        alc = {r["id"]: r["correct"] for r in by["spec-always"]}
        d["correct_where_always_wrong"] = sum(r["correct"] and alc.get(r["id"]) is False for r in rs)
        d["wrong_where_always_correct"] = sum(not r["correct"] and alc.get(r["id"]) is True for r in rs)
        d["unjudged_share_of_drafts"] = d["unjudged"] / max(1, d["unjudged"] + d["judged"])
        d["gate_level_last"] = st[-1]["ctl_model"]["gate_level"]
        # The first problem with an unjudged step: how long the gate took to calibrate.
        d["first_problem_with_unjudged"] = next((i for i, s in enumerate(st) if s["unjudged"] > 0), None)
        d["measured_speedup_mean"] = statistics.mean(meas) if meas else None
    res["modes"][m] = d
b = res["modes"]["base"]
for m in modes:
    d = res["modes"][m]
    d["speed_vs_base_mean"] = b["latency_ms_mean"] / d["latency_ms_mean"]
    d["speed_vs_base_median"] = b["latency_ms_median"] / d["latency_ms_median"]
a, al = res["modes"]["spec-auto"], res["modes"]["spec-always"]
res["auto_minus_always_points"] = 100 * (a["accuracy"] - al["accuracy"])
# Costs measured directly (bench_cost: best of 7, decode per token after a 60-token context, one
# 32-token prefill) next to what the controller learned.
cost = json.load(open(costf))
cs, cb = cost[0], cost[1]
m = a["ctl_model_last"]
judge_tokens = al["judged"] and sum(r["stats"]["judge_tokens"] for r in by["spec-always"]) / al["judged"]
res["costs"] = {
    "bench_cost": cost,
    "learned": m,
    "small_decode_ms_per_token": {"learned": m["small_tok_ms"], "measured": cs["decode_ms_per_token"]},
    "base_decode_ms_per_token": {"learned": m["base_tok_ms"], "measured": cb["decode_ms_per_token"]},
    "judge_prefill_ms_per_token": {"learned": m["judge_tok_ms"], "measured": cb["prefill_ms"] / cb["prefill_tokens"]},
    "judge_call_in_base_decode_tokens": {
        "learned": m["judge_tok_ms"] * judge_tokens / m["base_tok_ms"] if m["base_tok_ms"] else None,
        "measured": cb["judge_in_decode_tokens"], "judge_tokens_per_call": judge_tokens},
}
with open(out, "w") as f:
    json.dump(res, f, indent=1)
pr = lambda *x: print("[bench_policy]", *x, file=sys.stderr)
pr("pair:", label)
for k in modes:
    d = res["modes"][k]
    pr("%-12s accuracy %5.1f%%  latency mean %7.1f ms, median %7.1f ms  speed vs base %.2fx (median %.2fx)" % (
        k, 100 * d["accuracy"], d["latency_ms_mean"], d["latency_ms_median"], d["speed_vs_base_mean"],
        d["speed_vs_base_median"]))
pr("auto: %d steps speculated (%d probes), %d written by base; %d accepted unjudged, %d audits, %d disagreed; "
   "accuracy vs always %+.1f points" % (a["ctl_spec"], a["ctl_probes"], a["ctl_base"], a["unjudged"], a["audits"],
                                        a["audit_disagree"], res["auto_minus_always_points"]))
c = res["costs"]
for k in ["small_decode_ms_per_token", "base_decode_ms_per_token", "judge_prefill_ms_per_token",
          "judge_call_in_base_decode_tokens"]:
    v = c[k]
    pr("%-34s learned %s, bench_cost %s" % (k, "%.4f" % v["learned"] if v["learned"] else "-", "%.4f" % v["measured"]))
pr("predicted speedup (mean over runs) %s, measured %s" % (a["predicted_speedup_mean"], a["measured_speedup_mean"]))
pr("auto: %d drafts judged, %d unjudged (%.1f%%), first unjudged in problem %s, gate level %s; text as always on %d/%d; "
   "wrong where always is right %d, right where always is wrong %d" % (
       a["judged"], a["unjudged"], 100 * a["unjudged_share_of_drafts"], a["first_problem_with_unjudged"],
       a["gate_level_last"], a["same_text_as_always"], res["n_problems"], a["wrong_where_always_correct"],
       a["correct_where_always_wrong"]))
pr("load average before %s, after %s" % (load0, load1))
pr("wrote", out)
PY
