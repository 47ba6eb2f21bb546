#!/usr/bin/env bash
# bench_server.sh OUT.json [SMALL.gguf BASE.gguf]: `specreason-server` under concurrent load, greedy.
# The same R requests (default 8, SR_BENCH_REQUESTS) are sent with 1 (one after another), 2 and 4
# clients at a time to one server started with --parallel 4 (requests batched into shared
# contexts); reported per concurrency: total wall time, completion tokens per second, mean
# latency, speed-up over sequential, and whether every answer equals the sequential one (greedy:
# batching changes nothing). Then one request alone against the server versus the same run
# through the `specreason` CLI (its own t_total_ms, model loading excluded; the server's
# client-side latency includes HTTP and JSON): the server's overhead. All measured side by side in
# one run (the lone request 7 times, alternating with the CLI), policy always (the reference
# algorithm; auto decides by timing; SR_BENCH_POLICY=auto
# measures the default instead, where "same text" may differ by timing). The concurrency runs are
# made twice: SpecReason (mode spec) and the base model alone (mode base, body field "mode"), so
# the batching's gain on decoding (memory-bound: one pass over the weights serves every
# sequence) shows next to SpecReason's, whose judge and catch-up prefills are compute-bound on a
# CPU and gain only what merging adds to the matrix products' efficiency. For each sequential run
# it prints the bound from the runs' own time split: decoding merged for free, prefill as it is.
# Models: the arguments (generic prompts), else the trained pair (scripts/pair.sh, or SR_PAIR_DIR)
# on its held-out problems with its judge prompt, as bench_pair.sh runs it;
# SR_PAIR_PAD=SMALL_FF,BASE_FF pads it as bench_pair.sh does (real weight traffic).
# Environment: SR_BUILD_DIR (default build/), SR_BENCH_THREADS (default 1), SR_BENCH_BUDGET
# (reasoning tokens per request, default 256).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bench_server.sh OUT.json [SMALL.gguf BASE.gguf]" >&2; exit 2; }
out=$1
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SR_BUILD_DIR:-$root/build}
meta=
if [ $# -ge 3 ]; then small=$2; base=$3
else
    if [ -n "${SR_PAIR_DIR:-}" ]; then paths=("$SR_PAIR_DIR/small.gguf" "$SR_PAIR_DIR/base.gguf")
    else mapfile -t paths < <(SR_BUILD_DIR=$build "$root/scripts/pair.sh"); fi
    [ ${#paths[@]} -eq 2 ] || { echo "bench_server.sh: scripts/pair.sh failed" >&2; exit 1; }
    dir=$(dirname "${paths[0]}")
    meta=$dir/meta.json
    if [ -n "${SR_PAIR_PAD:-}" ]; then
        IFS=, read -r pad_small pad_base <<<"$SR_PAIR_PAD"
        case "$pad_small,$pad_base" in *[!0-9,]*|,*|*,) echo "bench_server.sh: SR_PAIR_PAD must be SMALL_FF,BASE_FF" >&2; exit 2 ;; esac
        padded=("$dir/small-ff$pad_small.gguf" "$dir/base-ff$pad_base.gguf")
        for k in 0 1; do
            [ -f "${padded[k]}" ] || "$build/tools/train/sr-train" pad -m "${paths[k]}" -o "${padded[k]}" \
                --ff "$([ $k = 0 ] && echo "$pad_small" || echo "$pad_base")"
        done
        paths=("${padded[@]}")
    fi
    small=${paths[0]}; base=${paths[1]}
fi
for f in "$small" "$base" "$build/specreason-server" "$build/specreason"; do
    [ -e "$f" ] || { echo "bench_server.sh: $f not found" >&2; exit 1; }
done
exec python3 - "$out" "$build" "$small" "$base" "${SR_BENCH_THREADS:-1}" "${SR_BENCH_REQUESTS:-8}" \
    "${SR_BENCH_BUDGET:-256}" "$meta" "${SR_BENCH_POLICY:-always}" <<'PY'
import http.client, json, os, re, signal, subprocess, sys, threading, time

out, build, small, base, threads, n_req, budget = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
meta, policy = sys.argv[8], sys.argv[9]
run = ["--threads", threads, "--threads-batch", threads, "--ctx", "512" if meta else "2048", "--budget", str(budget),
       "--max-step-tokens", "32", "--max-answer-tokens", "16", "--greedy", "--template", "raw", "--policy", policy,
       "--threshold", "7"]
if meta:
    m = json.load(open(meta))
    run += ["--judge-prompt", m["judge_prompt"], "--judge-prefill", m["judge_prefill"]]
    held = [json.loads(l) for l in open(os.path.join(os.path.dirname(meta), "heldout.jsonl"))]
    prompts = [held[i]["problem"] for i in range(n_req)]
else:
    prompts = ["Problem %d: compute %d * %d step by step." % (i, 17 + i, 23 + 2 * i) for i in range(n_req)]

srv = subprocess.Popen([os.path.join(build, "specreason-server"), "--small", small, "--base", base, "--port", "0",
                        "--parallel", "4", "--queue", "16", "--quiet", *run], stderr=subprocess.PIPE, text=True)
port = None
for line in srv.stderr:
    m = re.search(r"ready on http://127\.0\.0\.1:(\d+)", line)
    if m:
        port = int(m.group(1))
        break
if not port:
    sys.exit("bench_server.sh: the server did not start")
threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()

def chat(p, mode="spec"):
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    c.request("POST", "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": p}], "mode": mode}),
              {"Content-Type": "application/json"})
    r = c.getresponse()
    body = json.loads(r.read())
    c.close()
    if r.status != 200:
        sys.exit("bench_server.sh: HTTP %d: %s" % (r.status, body))
    return time.monotonic() - t0, body

def full(body):
    m = body["choices"][0]["message"]
    return (m.get("reasoning_content") or "") + "\x00" + (m.get("content") or "")

answers = {}

def batch(conc, mode):
    lat, toks, lock, todo, same, split = [], [0], threading.Lock(), list(prompts), [True], []
    def client():
        while True:
            with lock:
                if not todo:
                    return
                p = todo.pop(0)
            dt, body = chat(p, mode)
            with lock:
                lat.append(dt)
                split.append(body["specreason"]["time_ms"])
                toks[0] += body["usage"]["completion_tokens"]
                if (mode, p) in answers:
                    same[0] = same[0] and answers[(mode, p)] == full(body)
                else:
                    answers[(mode, p)] = full(body)
    t0 = time.monotonic()
    ths = [threading.Thread(target=client) for _ in range(conc)]
    [t.start() for t in ths]
    [t.join() for t in ths]
    wall = time.monotonic() - t0
    # What batching could at best do for these requests run 4 at a time: the decode share (small and
    # base model writing) merged for free, the prefill share (judge calls, prompts, catching up and
    # adopting steps: compute-bound on a CPU, a merged prefill costs the sum of its parts) as it is.
    tot = sum(x["total"] for x in split)
    dec = sum(x["small"] + x["base"] for x in split)
    bound = {"decode_share": round(dec / tot, 4) if tot else None,
             "prefill_share": round(sum(x["judge"] + x["prompt"] + x["sync"] for x in split) / tot, 4) if tot else None,
             "speedup_bound_4": round(tot / (tot - dec + dec / 4), 3) if tot else None}
    return {"mode": mode, "concurrency": conc, "requests": len(lat), "time_split_bound": bound, "wall_s": round(wall, 3),
            "completion_tokens": toks[0], "tokens_per_s": round(toks[0] / wall, 2),
            "mean_latency_s": round(sum(lat) / len(lat), 3), "same_text_as_sequential": same[0]}

chat(prompts[0])  # warm-up
res = {"small": small, "base": base, "threads": int(threads), "requests": n_req, "budget": budget, "flags": run,
       "policy": policy, "load_average_start": os.getloadavg()[0],
       "server_parallel": 4, "runs": []}
for mode in ("spec", "base"):
    for conc in (1, 2, 4):
        r = batch(conc, mode)
        res["runs"].append(r)
        print("%s, concurrency %d: %.2f s total, %.1f tok/s, mean latency %.2f s, same text: %s" %
              (mode, conc, r["wall_s"], r["tokens_per_s"], r["mean_latency_s"], r["same_text_as_sequential"]),
              file=sys.stderr)
seq = {r["mode"]: r["wall_s"] for r in res["runs"] if r["concurrency"] == 1}
for r in res["runs"]:
    if r["concurrency"] == 1:
        b = r["time_split_bound"]
        print("%s, sequential: decoding %.0f%% of the run time, prefill %.0f%%: 4 at a time at best %.2fx" %
              (r["mode"], 100 * (b["decode_share"] or 0), 100 * (b["prefill_share"] or 0), b["speedup_bound_4"] or 0),
              file=sys.stderr)
for r in res["runs"]:
    r["speedup_vs_sequential"] = round(seq[r["mode"]] / r["wall_s"], 3)
    print("%s, concurrency %d: %.3fx sequential" % (r["mode"], r["concurrency"], r["speedup_vs_sequential"]),
          file=sys.stderr)

# One request alone: server (client-side wall, and the run's own time) vs the CLI's run time.
lone = []
for i in range(7):
    dt, body = chat(prompts[0])
    cli = subprocess.run([os.path.join(build, "specreason"), "--small", small, "--base", base, *run, "--json",
                          "-p", prompts[0]], capture_output=True, text=True, check=True)
    cj = json.loads(cli.stdout)
    same = body["choices"][0]["message"]["reasoning_content"] == cj["text"].split("</think>")[0]
    lone.append({"server_wall_ms": round(dt * 1000, 1), "server_run_ms": body["specreason"]["time_ms"]["total"],
                 "cli_run_ms": cj["stats"]["t_total_ms"], "same_text": same})
mean = lambda k: sum(x[k] for x in lone) / len(lone)
med = lambda k: sorted(x[k] for x in lone)[len(lone) // 2]
res["lone"] = {"samples": lone, "server_wall_ms": round(mean("server_wall_ms"), 1),
               "cli_run_ms": round(mean("cli_run_ms"), 1),
               "server_over_cli": round(mean("server_wall_ms") / mean("cli_run_ms"), 4),
               "server_over_cli_median": round(med("server_wall_ms") / med("cli_run_ms"), 4)}
print("lone request, 7 alternating samples: server %.0f ms (client side) vs CLI %.0f ms: %.3fx (medians %.3fx)" %
      (res["lone"]["server_wall_ms"], res["lone"]["cli_run_ms"], res["lone"]["server_over_cli"],
       res["lone"]["server_over_cli_median"]), file=sys.stderr)
res["load_average_end"] = os.getloadavg()[0]
srv.send_signal(signal.SIGTERM)
srv.wait(timeout=120)
with open(out, "w") as f:
    json.dump(res, f, indent=1)
print(json.dumps(res))
PY
