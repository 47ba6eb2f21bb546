#!/usr/bin/env python3
"""bench_remote.py: what serving the models over HTTP costs, side by side in one run.

The same prompt and models (greedy SpecReason, fixed budget) run in-process and both-remote
(two llama-server processes on loopback, token mode: the GGUFs give the vocabulary), alternating
in-process / remote for --reps rounds; medians of the wall times, the remote overhead
(remote / in-process - 1), the share of the remote run's wall time spent inside HTTP requests
(server compute included) and the client's own time outside them. Parity of the outputs is
checked too (same text), so the two sides do the same work. Writes JSON (stdout or --out).

usage: bench_remote.py --build BUILD_DIR [--small S.gguf --base B.gguf] [--threads N] [--reps N]
                       [--budget N] [--out FILE.json]
Without --small/--base it generates the bench models (random weights, Qwen2 tokenizer) into
BUILD_DIR/bench-models as bench/run.sh does. llama-server comes from the llama.cpp prefix found
in BUILD_DIR/CMakeCache.txt (llama_DIR).
"""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_health(port, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                if b" 200 " in s.recv(64):
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def llama_prefix(build):
    for line in open(os.path.join(build, "CMakeCache.txt")):
        if line.startswith("llama_DIR:"):
            return os.path.abspath(os.path.join(line.split("=", 1)[1].strip(), "..", "..", ".."))
    raise SystemExit("llama_DIR not found in %s/CMakeCache.txt" % build)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--small")
    ap.add_argument("--base")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--budget", type=int, default=256)
    ap.add_argument("--out")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    prefix = llama_prefix(build)
    cli = os.path.join(build, "specreason")
    small, base = a.small, a.base
    if not small or not base:
        m = os.path.join(build, "bench-models")
        os.makedirs(m, exist_ok=True)
        vocab = os.path.join(prefix, "share", "ggml-vocab-qwen2.gguf")
        for name, preset, seed in (("small", "small", 1), ("base", "base", 2)):
            path = os.path.join(m, name + ".gguf")
            if not os.path.exists(path):
                subprocess.run([os.path.join(build, "sr-genmodel"), "--quiet", "--vocab", vocab, "-o", path, "--preset",
                                preset, "--seed", str(seed), "--bias-newlines", "2", "--bias-digits", "5"], check=True)
        small, base = os.path.join(m, "small.gguf"), os.path.join(m, "base.gguf")
    servers, ports = [], []
    try:
        for path in (small, base):
            port = free_port()
            ports.append(port)
            servers.append(subprocess.Popen(
                [os.path.join(prefix, "bin", "llama-server"), "-m", path, "-c", "4096", "-np", "1", "--host", "127.0.0.1",
                 "--port", str(port), "-t", str(a.threads), "-tb", str(a.threads), "--no-webui", "--no-warmup"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        for p in ports:
            if not wait_health(p):
                raise SystemExit("llama-server did not start")
        common = ["--small", small, "--base", base, "-p", "A train travels 120 km in 1.5 hours, then 80 km in 1 hour. "
                  "What is its average speed?", "--greedy", "--policy", "always", "--json", "--ctx", "4096", "-n", str(a.budget),
                  "--max-step-tokens", "48", "--max-answer-tokens", "32", "-t", "3", "--threads", str(a.threads),
                  "--threads-batch", str(a.threads)]
        remote = ["--small-url", "http://127.0.0.1:%d" % ports[0], "--base-url", "http://127.0.0.1:%d" % ports[1]]
        runs = {"in_process": [], "remote": []}
        texts = {}
        for r in range(a.reps + 1):  # round 0 warms caches and page-ins, not counted
            for kind, extra in (("in_process", []), ("remote", remote)):
                t0 = time.time()
                out = subprocess.run([cli] + common + extra, capture_output=True, check=True).stdout
                wall = (time.time() - t0) * 1000
                res = json.loads(out)
                texts[kind] = res["text"]
                S = res["stats"]
                if r > 0:
                    runs[kind].append({"wall_ms": wall, "t_total_ms": S["t_total_ms"],
                                       "t_http_ms": S["t_http_small_ms"] + S["t_http_base_ms"],
                                       "requests": S["http_requests_small"] + S["http_requests_base"],
                                       "bytes": S["http_bytes_small"] + S["http_bytes_base"],
                                       "tokens": S["adopted_tokens"] + S["answer_tokens"]})
                print("round %d %s: %.0f ms" % (r, kind, wall), file=sys.stderr)
    finally:
        for s in servers:
            if s.poll() is None:
                os.killpg(s.pid, signal.SIGKILL)
            s.wait()

    def med(kind, key):
        return statistics.median(x[key] for x in runs[kind])

    loc, rem = med("in_process", "t_total_ms"), med("remote", "t_total_ms")
    http = med("remote", "t_http_ms")
    res = {
        "bench": "remote",
        "models": {"small": small, "base": base},
        "threads": a.threads, "reps": a.reps, "budget": a.budget,
        "same_text": texts["in_process"] == texts["remote"],
        "tokens": runs["remote"][0]["tokens"],
        "in_process_ms": round(loc, 1),
        "remote_ms": round(rem, 1),
        "remote_overhead": round(rem / loc - 1, 4),
        "http_share_of_remote": round(http / rem, 4),
        "client_outside_http_ms": round(rem - http, 1),
        "requests_per_run": runs["remote"][0]["requests"],
        "bytes_per_run": runs["remote"][0]["bytes"],
        "process_wall_ms": {"in_process": round(med("in_process", "wall_ms"), 1), "remote": round(med("remote", "wall_ms"), 1)},
        "runs": runs,
        "note": "t_total_ms is the run inside the process (model loading excluded); HTTP time includes the "
                "servers' compute; loopback, both servers and the client on this machine",
    }
    text = json.dumps(res, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
