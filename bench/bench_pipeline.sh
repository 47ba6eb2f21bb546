#!/usr/bin/env bash
# bench_pipeline.sh OUT.json [N]: pipelined speculation (issue 17) on N held-out problems of the
# trained pair (default 30), greedy, threshold 7, policy always, two CPU threads in every column:
#   base           base only, --threads 2
#   spec           SpecReason unpipelined, --threads 2 (each model decodes on both threads in turn)
#   base-1         base only, one thread
#   spec-1+1       SpecReason unpipelined, one thread per model (--small-threads 1 --base-threads 1)
#   spec-pipe      SpecReason pipelined, one thread per model: the small model drafts step k+1 on
#                  its own core while the base model judges step k
# base and spec run side by side per problem in one specreason-eval process, base-1, spec-1+1 and
# spec-pipe in a second (thread counts belong to the engine). On a busy machine two OpenMP
# threads per decode can spin and lose badly; the one-thread columns show that apart. Writes one JSON object to OUT.json
# and a summary to stderr: per column accuracy, latency mean/median (the run's t_total_ms),
# speed vs base and vs spec; whether spec-pipe's text equals spec-1+1's and spec's on every
# problem; drafts started ahead / used / thrown away, drafting time on the second thread and the
# part of it hidden behind judging.
# Environment: SR_BUILD_DIR (default build/), SR_PAIR_DIR (default: the newest pair directory with
# meta.json under ${SPECREASON_CACHE:-~/.cache/specreason}/pair/), SR_PAIR_PAD=SMALL_FF,BASE_FF
# (padded copies via `sr-train pad`, written once next to the pair, as bench_pair.sh),
# SR_PIPE_FLAGS (extra specreason-eval flags).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bench_pipeline.sh OUT.json [N]" >&2; exit 2; }
out=$1
n=${2:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SR_BUILD_DIR:-$root/build}
ev=$build/specreason-eval
[ -x "$ev" ] || { echo "bench_pipeline.sh: build first ($ev)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

. "$(dirname "$0")/pair_models.sh"
pair_models bench_pipeline.sh "$build"
data=$dir/heldout.jsonl
common=(--small "$small" --base "$base" -d "$data" --temp 0 -t 7 -l "$n" --progress lines --policy always
        --template raw --judge-prompt "$jp" --judge-prefill "$jf" --ctx 512 --budget 256 --max-step-tokens 32
        --max-answer-tokens 16)

echo "[bench_pipeline] $label: $small + $base, $n problems" >&2
"$ev" "${common[@]}" -m base,spec-always --threads 2 --pipeline off ${SR_PIPE_FLAGS:-} -o "$tmp/two" >"$tmp/two.txt"
"$ev" "${common[@]}" -m base,spec-always,spec-pipe --small-threads 1 --base-threads 1 --pipeline off ${SR_PIPE_FLAGS:-} \
    -o "$tmp/one" >"$tmp/one.txt"

exec python3 - "$out" "$tmp/two/results.jsonl" "$tmp/one/results.jsonl" "$label" "$small" "$base" <<'PY'
import json, statistics, sys
out, two, one, label, small, base = sys.argv[1:7]
load = lambda f: [json.loads(l) for l in open(f) if l.strip()]
r2, r1 = load(two), load(one)
cols = {"base": [r for r in r2 if r["mode"] == "base"], "spec": [r for r in r2 if r["mode"] == "spec-always"],
        "base-1": [r for r in r1 if r["mode"] == "base"], "spec-1+1": [r for r in r1 if r["mode"] == "spec-always"], "spec-pipe": [r for r in r1 if r["mode"] == "spec-pipe"]}
res = {"pair": label, "small": small, "base": base, "n_problems": len(cols["base"]), "threshold": 7,
       "threads": {"base": "2", "spec": "2 (both models)", "base-1": "1", "spec-1+1": "1 + 1", "spec-pipe": "1 + 1"}, "columns": {}}
for k, rs in cols.items():
    lat = [r["stats"]["t_total_ms"] for r in rs]
    st = [r["stats"] for r in rs]
    d = {"accuracy": sum(r["correct"] for r in rs) / max(1, len(rs)),
         "latency_ms_mean": statistics.mean(lat), "latency_ms_median": statistics.median(lat),
         "steps": sum(s["steps"] for s in st), "judged": sum(s["judged"] for s in st),
         "steps_small": sum(s["steps_small"] for s in st), "t_small_ms": sum(s["t_small_ms"] for s in st)}
    if not k.startswith("base"):
        for f in ["pipe_started", "pipe_used", "pipe_discarded"]:
            d[f] = sum(s[f] for s in st)
        for f in ["t_pipe_draft_ms", "t_pipe_wait_ms", "t_pipe_hidden_ms"]:
            d[f] = sum(s[f] for s in st)
    res["columns"][k] = d
c = res["columns"]
for k in c:
    c[k]["speed_vs_base_mean"] = c["base"]["latency_ms_mean"] / c[k]["latency_ms_mean"]
    c[k]["speed_vs_spec_mean"] = c["spec"]["latency_ms_mean"] / c[k]["latency_ms_mean"]
    c[k]["speed_vs_spec_median"] = c["spec"]["latency_ms_median"] / c[k]["latency_ms_median"]
    c[k]["speed_vs_spec_1plus1_mean"] = c["spec-1+1"]["latency_ms_mean"] / c[k]["latency_ms_mean"]
    c[k]["speed_vs_base_1_mean"] = c["base-1"]["latency_ms_mean"] / c[k]["latency_ms_mean"]
text = lambda rs: {r["id"]: r["text"] for r in rs}
tp, t1, t2 = text(cols["spec-pipe"]), text(cols["spec-1+1"]), text(cols["spec"])
res["identical_text_pipe_vs_1plus1"] = sum(tp[i] == t1.get(i) for i in tp)
res["identical_text_pipe_vs_spec"] = sum(tp[i] == t2.get(i) for i in tp)
p = c["spec-pipe"]
res["drafting_hidden_fraction"] = p["t_pipe_hidden_ms"] / p["t_pipe_draft_ms"] if p["t_pipe_draft_ms"] else None
# The most pipelining can save with one thread per model: per problem, at most the smaller of the
# small model's drafting and the base model's judging of spec-1+1 can overlap. An optimistic bound
# (it ignores the two models slowing each other down): the best pipelined time, and its speed
# against the unpipelined run on two threads (the issue's comparison) and on 1 + 1.
best = sum(r["stats"]["t_total_ms"] - min(r["stats"]["t_small_ms"], r["stats"]["t_judge_ms"]) for r in cols["spec-1+1"])
nb = max(1, len(cols["spec-1+1"]))
res["pipelined_bound"] = {
    "best_latency_ms_mean": best / nb,
    "best_speed_vs_spec_mean": c["spec"]["latency_ms_mean"] / (best / nb) if best else None,
    "best_speed_vs_spec_1plus1_mean": c["spec-1+1"]["latency_ms_mean"] / (best / nb) if best else None,
    "t_small_ms_share_of_spec_1plus1": sum(r["stats"]["t_small_ms"] for r in cols["spec-1+1"]) /
                                       max(1e-9, sum(r["stats"]["t_total_ms"] for r in cols["spec-1+1"])),
    "t_judge_ms_share_of_spec_1plus1": sum(r["stats"]["t_judge_ms"] for r in cols["spec-1+1"]) /
                                       max(1e-9, sum(r["stats"]["t_total_ms"] for r in cols["spec-1+1"])),
}
with open(out, "w") as f:
    json.dump(res, f, indent=1)
pr = lambda *x: print("[bench_pipeline]", *x, file=sys.stderr)
pr("pair:", label)
for k, d in c.items():
    pr("%-10s accuracy %5.1f%%  latency mean %8.1f ms, median %8.1f ms  vs base %.2fx  vs spec %.2fx  vs base-1 %.2fx  "
       "vs spec-1+1 %.2fx" % (k, 100 * d["accuracy"], d["latency_ms_mean"], d["latency_ms_median"],
                              d["speed_vs_base_mean"], d["speed_vs_spec_mean"], d["speed_vs_base_1_mean"],
                              d["speed_vs_spec_1plus1_mean"]))
pr("spec-pipe: %d drafts ahead, %d used, %d thrown away; drafting %.0f ms on the second thread, %.0f ms hidden (%s), "
   "loop waited %.0f ms" % (p["pipe_started"], p["pipe_used"], p["pipe_discarded"], p["t_pipe_draft_ms"],
                            p["t_pipe_hidden_ms"], "%.0f%%" % (100 * res["drafting_hidden_fraction"])
                            if res["drafting_hidden_fraction"] is not None else "-", p["t_pipe_wait_ms"]))
pb = res["pipelined_bound"]
pr("bound: perfect overlap of drafting and judging (1 + 1 threads) would take %.1f ms mean: %.2fx spec (2 threads), "
   "%.2fx spec-1+1; drafting is %.0f%% and judging %.0f%% of spec-1+1's time" % (
       pb["best_latency_ms_mean"], pb["best_speed_vs_spec_mean"] or 0, pb["best_speed_vs_spec_1plus1_mean"] or 0,
       100 * pb["t_small_ms_share_of_spec_1plus1"], 100 * pb["t_judge_ms_share_of_spec_1plus1"]))
pr("identical text: pipe vs 1+1 %d/%d, pipe vs spec (2 threads) %d/%d" % (
    res["identical_text_pipe_vs_1plus1"], len(tp), res["identical_text_pipe_vs_spec"], len(tp)))
pr("wrote", out)
PY
