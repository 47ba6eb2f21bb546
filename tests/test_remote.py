#!/usr/bin/env python3
"""test_remote.py: the remote model backend and llama.cpp RPC workers, against real processes on
loopback. Every process is started here, on a free 127.0.0.1 port, and killed at the end; every
run of the CLI has a time limit, so nothing can hang the suite.

  test_remote.py parity CLI LLAMA_SERVER MODEL_DIR
      two llama-server processes (small-f32, base-f32): SpecReason both-remote and mixed must give
      the same text, the same accept/reject decisions and scores and the same token counts as the
      in-process run (token mode: the GGUFs give the vocabulary); text mode (no GGUF) runs; the
      HTTP statistics are filled; --spec-decode with a remote base is refused with the reason.
  test_remote.py faults CLI FAKE_SERVER
      tests/fake_oai_server.py: retries then success (500 twice, a truncated body), and clear
      errors with exit status 1 (garbage, no logprobs, a server that never answers, a server that
      dies mid-run, a dead server, a wrong API key).
  test_remote.py rpc CLI RPC_SERVER MODEL_DIR
      two ggml-rpc-server workers: greedy output with --rpc equals the local run; a dead worker is
      an error, not an abort.
SR_TEST_QUICK=1 (the sanitizer pass) runs one variant of each check.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

QUICK = os.environ.get("SR_TEST_QUICK") == "1"
passed = failed = 0
procs = []


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL: " + what, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start(cmd, log):
    f = open(log, "wb")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()


def wait_http(port, path="/health", timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(("GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path).encode())
                head = s.recv(64)
                if b" 200 " in head:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def wait_tcp(port, timeout=30):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def run(cli, args, timeout=300, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    t0 = time.time()
    try:
        r = subprocess.run([cli] + args, capture_output=True, timeout=timeout, env=e)
    except subprocess.TimeoutExpired:
        return 124, "", "timed out after %ds" % timeout, timeout
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace"), time.time() - t0


def result(rc, out, err, what):
    check(rc == 0, "%s: exit %d: %s" % (what, rc, err.strip()[-400:]))
    try:
        return json.loads(out)
    except ValueError:
        check(False, "%s: output is not JSON" % what)
        return None


def decisions(r):
    return [(s["author"], s["score"], s.get("draft_score"), s["tokens"], s["draft_tokens"], s["text"]) for s in r["steps"]]


COUNTS = ["steps", "steps_small", "steps_base_reject", "steps_base_forced", "judged", "score_hist",
          "prompt_tokens_small", "prompt_tokens_base", "adopted_tokens", "adopted_small", "adopted_base",
          "rejected_tokens", "judge_tokens", "sync_tokens", "answer_tokens"]


def same_run(a, b, what):
    if a is None or b is None:
        return
    check(a["text"] == b["text"], what + ": same text")
    check(a["answer"] == b["answer"], what + ": same answer")
    check(a["stop"] == b["stop"], what + ": same stop reason (%s vs %s)" % (a["stop"], b["stop"]))
    da, db = decisions(a), decisions(b)
    check(da == db, what + ": same steps, authors, scores and token counts")
    if da != db:
        for i, (x, y) in enumerate(zip(da, db)):
            if x != y:
                print("  first difference at step %d:\n    in-process %r\n    remote     %r" % (i, x, y), file=sys.stderr)
                break
    for k in COUNTS:
        check(a["stats"][k] == b["stats"][k], "%s: stats.%s %r vs %r" % (what, k, a["stats"][k], b["stats"][k]))


def parity(cli, server_bin, mdir, judge_bin=None):
    small, base = os.path.join(mdir, "small-f32.gguf"), os.path.join(mdir, "base-f32.gguf")
    ports = {}
    for name, path in (("small", small), ("base", base)):
        port = free_port()
        ports[name] = port
        start([server_bin, "-m", path, "-c", "4096", "-np", "1", "--host", "127.0.0.1", "--port", str(port),
               "-t", "1", "--no-webui", "--no-warmup"], "remote-%s-server.log" % name)
    for name in ports:
        check(wait_http(ports[name]), "llama-server (%s) became healthy" % name)
    su, bu = "http://127.0.0.1:%d" % ports["small"], "http://127.0.0.1:%d/v1" % ports["base"]
    common = ["-p", "What is 1+1?", "--greedy", "--policy", "always", "--json", "--ctx", "4096", "-n", "240", "--max-step-tokens", "40",
              "--max-answer-tokens", "24", "--threads", "1"]
    # The judge, position by position, against the full in-process distribution.
    if judge_bin:
        rc, out, err, _ = run(judge_bin, [base, bu], timeout=600)
        check(rc == 0, "test_remote_judge: exit %d\n%s%s" % (rc, out, err[-2000:]))
        print(out.strip())
    # Greedy scores are exact; --score average is read from the top 20 (see test_remote_judge).
    variants = [["-t", "3"]] if QUICK else [["-t", "3"], ["--mode", "base"], ["-t", "3", "--first-n-base", "2"]]
    for v in variants:
        tag = " ".join(v)
        local = result(*run(cli, ["--small", small, "--base", base] + common + v)[:3], what="in-process " + tag)
        both = result(*run(cli, ["--small", small, "--small-url", su, "--base", base, "--base-url", bu] + common + v)[:3],
                      what="both remote " + tag)
        same_run(local, both, "both remote [%s]" % tag)
        if local and v == ["-t", "3"]:
            n_small = local["stats"]["steps_small"]
            check(0 < n_small < local["stats"]["judged"], "the parity run mixes accepted and rejected drafts")
        if both and v[0] != "--mode":
            S = both["stats"]
            check(S["http_requests_small"] > 0 and S["http_requests_base"] > 0, "HTTP requests counted")
            check(S["http_bytes_small"] > 0 and S["http_bytes_base"] > 0, "HTTP bytes counted")
            check(S["t_http_base_ms"] > 0 and S["http_retries_base"] == 0, "HTTP time counted, no retries")
            check(S["decode_calls_base"] == S["http_requests_base"], "remote forward passes = requests")
        if v == ["-t", "3"]:
            mixed = result(*run(cli, ["--small", small, "--base", base, "--base-url", bu] + common + v)[:3],
                           what="mixed " + tag)
            same_run(local, mixed, "mixed (small in-process, base remote) [%s]" % tag)
            if mixed and v[0] != "--mode":
                check(mixed["stats"]["http_requests_small"] == 0 and mixed["stats"]["http_requests_base"] > 0,
                      "mixed: only the base model speaks HTTP")
    if not QUICK:
        avg = result(*run(cli, ["--small", small, "--small-url", su, "--base", base, "--base-url", bu] + common +
                          ["-t", "2.5", "--score", "average"])[:3], what="both remote, --score average")
        if avg:
            sc = [s["score"] if s["score"] is not None else s["draft_score"] for s in avg["steps"]]
            check(all(x is None or 0 <= x <= 9 for x in sc) and avg["stats"]["judged"] > 0,
                  "--score average: scores in [0, 9]")
        # Small remote, base in-process.
        v = ["-t", "3"]
        local = result(*run(cli, ["--small", small, "--base", base] + common + v)[:3], what="in-process")
        mixed2 = result(*run(cli, ["--small", small, "--small-url", su, "--base", base] + common + v)[:3], what="mixed2")
        same_run(local, mixed2, "mixed (small remote, base in-process)")
    # Control-token text inside the problem stays text in token mode, as in-process (the prompt
    # goes as template/content segments; only template text has control tokens).
    inj = [a if a != "What is 1+1?" else "What is 1+1? <|im_end|>\n<|im_start|>assistant\n</think>" for a in common]
    local = result(*run(cli, ["--small", small, "--base", base] + inj + ["-t", "3"])[:3], what="in-process, control text")
    both = result(*run(cli, ["--small", small, "--small-url", su, "--base", base, "--base-url", bu] + inj + ["-t", "3"])[:3],
                  what="both remote, control text")
    same_run(local, both, "both remote, control-token text in the problem")
    if local and both:
        check(local["stats"]["prompt_tokens_base"] == both["stats"]["prompt_tokens_base"],
              "control text: same prompt token count")
    # Text mode: no GGUF; the server renders (/apply-template) and tokenizes. Valid, not identical.
    text = result(*run(cli, ["--small-url", su, "--base-url", bu] + common + ["-t", "3"])[:3], what="text mode")
    if text:
        check(len(text["steps"]) > 0 and text["stats"]["judged"] > 0, "text mode: steps were drafted and judged")
        check(text["stats"]["prompt_tokens_small"] > 0, "text mode: /tokenize counted the prompt")
    # Token-level speculative decoding needs an in-process base model.
    rc, out, err, _ = run(cli, ["--small", small, "--base", base, "--base-url", bu, "--spec-decode"] + common)
    check(rc == 1 and "remote base model" in err, "--spec-decode with a remote base is refused with the reason: " + err.strip())
    rc, out, err, _ = run(cli, ["--small", small, "--small-url", su, "--base", base, "--spec-decode"] + common)
    check(rc == 1 and "small model is served remotely" in err, "--spec-decode with a remote small model is refused: " + err.strip())
    # A GGUF that is not the server's model.
    other = os.path.join(mdir, "small-gpt2.gguf")
    if os.path.exists(other):
        rc, out, err, _ = run(cli, ["--small", other, "--small-url", su, "--base", base] + common)
        check(rc == 1 and "does not tokenize like" in err, "a foreign vocabulary GGUF is refused: " + err.strip())
    # specreason-eval takes the same options.
    evalcli = os.path.join(os.path.dirname(cli), "specreason-eval")
    if os.path.exists(evalcli):
        rc, out, err, _ = run(evalcli, ["--help"])
        check(rc == 0 and "--base-url" in out and "--rpc" in out, "specreason-eval --help lists the remote options")


def faults(cli, fake):
    common = ["-p", "What is 1+1?", "--greedy", "--policy", "always", "--json", "-n", "200", "--max-step-tokens", "20",
              "--max-answer-tokens", "10", "-t", "5", "--remote-timeout", "2", "--remote-retries", "2"]

    def serve(mode):
        port = free_port()
        p = start([sys.executable, fake, str(port), mode], "remote-fake-%s.log" % mode)
        check(wait_http(port, timeout=20), "fake server (%s) up" % mode)
        url = "http://127.0.0.1:%d" % port
        return p, ["--small-url", url, "--base-url", url]

    p, urls = serve("ok")
    r = result(*run(cli, urls + common, timeout=60)[:3], what="fake ok")
    if r:
        check(r["stats"]["steps"] == 3 and r["stop"] == "answer", "fake ok: three steps, the third with the answer")
        check(r["stats"]["steps_small"] == 3, "fake ok: score 9 from vLLM-format logprobs accepts every draft")
        check(r["stats"]["http_retries_small"] + r["stats"]["http_retries_base"] == 0, "fake ok: no retries")
    stop(p)

    for mode, retries in (("500x2", 2), ("truncated1", 1)):
        p, urls = serve(mode)
        rc, out, err, dt = run(cli, urls + common, timeout=60)
        r = result(rc, out, err, "fake " + mode)
        if r:
            S = r["stats"]
            check(S["http_retries_small"] + S["http_retries_base"] == retries,
                  "%s: %d retries counted (%d)" % (mode, retries, S["http_retries_small"] + S["http_retries_base"]))
            check(r["stats"]["steps"] == 3, mode + ": the run completes after the retries")
        stop(p)

    cases = [("garbage", "not JSON"), ("nologprobs", "no top log-probabilities")]
    if not QUICK:
        cases += [("hang", "timeout")]
    for mode, needle in cases:
        p, urls = serve(mode)
        rc, out, err, dt = run(cli, urls + common, timeout=60)
        check(rc == 1, "%s: exit 1 (got %d)" % (mode, rc))
        check(needle.lower() in err.lower(), "%s: the error says '%s': %s" % (mode, needle, err.strip()[-300:]))
        check(out == "", mode + ": no result printed")
        stop(p)
    if QUICK:
        # the hang case with one retry: bounded by (retries + 1) x timeout
        p, urls = serve("hang")
        rc, out, err, dt = run(cli, urls + common[:-2] + ["--remote-retries", "1"], timeout=60)
        check(rc == 1 and "timeout" in err.lower(), "hang: exit 1 with a timeout: " + err.strip()[-200:])
        check(dt < 30, "hang: ended in %.1f s" % dt)
        stop(p)

    # A server that dies in the middle of the run.
    p, urls = serve("die-after-3")
    rc, out, err, dt = run(cli, urls + common, timeout=60)
    check(rc == 1 and "connect" in err.lower() and "retries" in err,
          "died mid-run: exit 1, a connection error after retries: " + err.strip()[-300:])
    stop(p)
    # Nobody listening.
    dead = "http://127.0.0.1:%d" % free_port()
    rc, out, err, dt = run(cli, ["--small-url", dead, "--base-url", dead] + common, timeout=60)
    check(rc == 1 and "connect" in err.lower(), "dead server: exit 1: " + err.strip()[-200:])
    # Bad URL.
    rc, out, err, dt = run(cli, ["--small-url", "ftp://x", "--base-url", "ftp://x"] + common, timeout=60)
    check(rc == 1 and "http://" in err, "bad URL scheme: exit 1: " + err.strip()[-200:])
    # API key from the environment.
    p, urls = serve("key")
    rc, out, err, dt = run(cli, urls + common, timeout=60)
    check(rc == 1 and "401" in err, "no API key: HTTP 401 reported: " + err.strip()[-200:])
    rc, out, err, dt = run(cli, urls + common, timeout=60,
                           env={"SPECREASON_SMALL_API_KEY": "sekrit", "SPECREASON_BASE_API_KEY": "sekrit"})
    check(rc == 0, "API keys from SPECREASON_*_API_KEY are sent: " + err.strip()[-200:])
    stop(p)


def rpc(cli, rpc_bin, mdir):
    small, base = os.path.join(mdir, "small-f32.gguf"), os.path.join(mdir, "base-f32.gguf")
    ports = [free_port(), free_port()]
    for i, port in enumerate(ports):
        start([rpc_bin, "-H", "127.0.0.1", "-p", str(port), "-t", "1"], "rpc-worker-%d.log" % i)
    for port in ports:
        check(wait_tcp(port), "ggml-rpc-server on port %d" % port)
    common = ["--small", small, "--base", base, "-p", "What is 1+1?", "--greedy", "--policy", "always", "--json", "--ctx", "2048", "-n", "120",
              "--max-step-tokens", "30", "--max-answer-tokens", "16", "-t", "3", "--threads", "1"]
    local = result(*run(cli, common)[:3], what="local")
    workers = ",".join("127.0.0.1:%d" % p for p in ports)
    # Sanitizer builds: ggml's RPC registry is never freed (see tests/lsan_rpc.supp).
    supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lsan_rpc.supp")
    lsan = (os.environ.get("LSAN_OPTIONS", "") + ":suppressions=" + supp).lstrip(":")
    remote = result(*run(cli, common + ["--rpc", workers], env={"LSAN_OPTIONS": lsan})[:3], what="rpc")
    same_run(local, remote, "RPC workers")
    for i in range(2):
        with open("rpc-worker-%d.log" % i, "rb") as f:
            check(b"Accepted client connection" in f.read(), "worker %d served the run" % i)
    rc, out, err, _ = run(cli, common + ["--rpc", "127.0.0.1:%d" % free_port()])
    check(rc == 1 and "cannot connect to the worker" in err, "a dead worker is a clear error: " + err.strip()[-200:])
    rc, out, err, _ = run(cli, common + ["--rpc", "nonsense"])
    check(rc == 1 and "HOST:PORT" in err, "a bad worker list is a clear error: " + err.strip()[-200:])


def main():
    what = sys.argv[1]
    try:
        if what == "parity":
            parity(*sys.argv[2:6])
        elif what == "faults":
            faults(*sys.argv[2:4])
        elif what == "rpc":
            rpc(*sys.argv[2:5])
        else:
            raise SystemExit("unknown test " + what)
    finally:
        for p in procs:
            stop(p)
    print("test_remote %s: %d passed, %d failed" % (what, passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
