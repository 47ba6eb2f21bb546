#!/usr/bin/env python3
"""test_server.py SERVER CLI MODEL_DIR [part]: `specreason-server` end to end on generated models,
through real sockets on 127.0.0.1 (python's stdlib HTTP client, raw sockets for disconnects).

Parts (default all): api (shapes, streaming, server == CLI alone and beside other requests),
errors (one test per bad input, the server keeps serving), disconnect (a client that goes away
mid-stream frees its session at once), overlap (two requests progress at the same time), load
(bounded: fixed request count, a few clients, all answered or cleanly refused, healthy after).
Every server is stopped with SIGTERM and must exit 0 (under ASan: no leak)."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

SERVER, CLI, MODELS = sys.argv[1], sys.argv[2], sys.argv[3]
PARTS = sys.argv[4].split(",") if len(sys.argv) > 4 else ["api", "errors", "disconnect", "overlap", "load"]
# F32 models (fixture models_sd): batched and single-row matrix products round alike there, so
# "batched == alone" is exact (with F16 weights a near-tie can flip an argmax, as in any engine).
SMALL, BASE = os.path.join(MODELS, "small-f32.gguf"), os.path.join(MODELS, "base-f32.gguf")
# Both sides run policy always: policy auto's per-step decisions depend on measured time, so only
# the fixed policies give the same text twice.
RUN = ["--threads", "1", "--ctx", "2048", "--budget", "64", "--max-step-tokens", "16", "--max-answer-tokens", "8",
       "--greedy", "--policy", "always"]
failures = []
checks = 0


def check(cond, what):
    global checks
    checks += 1
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr, flush=True)


class Server:
    def __init__(self, *extra, env=None):
        args = [SERVER, "--small", SMALL, "--base", BASE, "--port", "0", *RUN, *extra]
        self.p = subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                  env=env)
        self.log = []
        self.port = None
        deadline = time.time() + 120
        while time.time() < deadline:
            line = self.p.stderr.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"ready on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if not self.port:
            raise SystemExit("server did not start: " + "".join(self.log))
        self.t = threading.Thread(target=self._drain, daemon=True)
        self.t.start()

    def _drain(self):
        for line in self.p.stderr:
            self.log.append(line)

    def request(self, method, path, body=None, headers=None, timeout=600):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, raw

    def chat(self, body, headers=None):
        st, raw = self.request("POST", "/v1/chat/completions", body, headers)
        try:
            return st, json.loads(raw)
        except ValueError:
            return st, {"_raw": raw.decode(errors="replace")}

    def stream(self, body, on_event=None):
        """POST with stream=true; returns (status, [parsed events], done_seen)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        c.request("POST", "/v1/chat/completions", body=json.dumps(dict(body, stream=True)).encode(),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if r.status != 200:
            raw = r.read()
            c.close()
            return r.status, [json.loads(raw)], False
        events, done = [], False
        buf = b""
        while True:
            chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                ev = ev.decode()
                assert ev.startswith("data: "), ev
                payload = ev[6:]
                if payload == "[DONE]":
                    done = True
                    continue
                obj = json.loads(payload)
                events.append(obj)
                if on_event:
                    on_event(obj)
        c.close()
        return 200, events, done

    def metrics(self):
        st, raw = self.request("GET", "/metrics")
        out = {}
        for line in raw.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = "timeout"
        self.t.join(timeout=10)
        check(rc == 0, "server exit status after SIGTERM: %s\n%s" % (rc, "".join(self.log[-30:])))
        check(any("shutting down" in l for l in self.log), "no shutdown line in the log")


def msg(text):
    return {"messages": [{"role": "user", "content": text}]}


def cli_text(prompt, *extra):
    out = subprocess.run([CLI, "--small", SMALL, "--base", BASE, *RUN, "--template", "raw", "--json", "-p", prompt,
                          *extra], capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise SystemExit("cli failed: " + out.stderr)
    return json.loads(out.stdout)


def full_text(resp):
    """The result text as the CLI prints it, from the OpenAI fields."""
    m = resp["choices"][0]["message"]
    if resp["specreason"]["think_ended"]:
        return m["reasoning_content"] + "</think>" + m["content"]
    return m["reasoning_content"]


def is_error(body, status, param=None, code=None):
    e = body.get("error") if isinstance(body, dict) else None
    ok = isinstance(e, dict) and set(e) >= {"message", "type", "param", "code"} and isinstance(e["message"], str) \
        and e["message"]
    if ok and param is not None:
        ok = e["param"] == param
    if ok and code is not None:
        ok = e["code"] == code
    return ok


PROMPTS = ["What is 2+3?", "Compute 17*23.", "Solve x^2 = 49 for x > 0."]


def part_api():
    s = Server("--parallel", "3")
    try:
        st, raw = s.request("GET", "/health")
        check(st == 200 and json.loads(raw) == {"status": "ok"}, "health after load: %s %s" % (st, raw))
        st, raw = s.request("GET", "/v1/models")
        models = json.loads(raw)
        check(st == 200 and models["data"][0]["id"] == "specreason", "models: %s" % raw)

        # Shape of a non-streaming response.
        st, r = s.chat(dict(msg(PROMPTS[0]), model="specreason", stream_options={"include_usage": True}))
        check(st == 200, "chat status %s %s" % (st, r))
        check(r["object"] == "chat.completion" and r["model"] == "specreason", "chat object")
        m = r["choices"][0]["message"]
        check(m["role"] == "assistant" and isinstance(m["content"], str) and isinstance(m["reasoning_content"], str),
              "message fields")
        u = r["usage"]
        check(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] and
              u["completion_tokens_details"]["reasoning_tokens"] <= u["completion_tokens"], "usage %s" % u)
        sp = r["specreason"]
        check(sp["steps_by_author"]["total"] == len(sp["steps"]) > 0 and
              sum(sp["score_hist"]) == sp["judged"], "specreason stats %s" % sp)
        check(u["completion_tokens_details"]["reasoning_tokens"] == sum(x["tokens"] for x in sp["steps"]),
              "reasoning tokens = adopted step tokens")

        # server == CLI (greedy), alone, and for the SpecReason knobs.
        for p in PROMPTS:
            st, r = s.chat(msg(p))
            c = cli_text(p)
            check(st == 200 and full_text(r) == c["text"], "server == cli for %r:\n%r\n%r" % (p, full_text(r), c["text"]))
            check(r["specreason"]["stop"] == c["stop"] and len(r["specreason"]["steps"]) == len(c["steps"]),
                  "same steps and stop for %r" % p)
        for body, flags in [({"threshold": 0}, ["--threshold", "0"]), ({"mode": "base"}, ["--mode", "base"]),
                            ({"threshold": 10, "first_n_base": 1}, ["--threshold", "10", "--first-n-base", "1"]),
                            ({"score_method": "average", "threshold": 4}, ["--score", "average", "--threshold", "4"]),
                            ({"max_tokens": 24}, ["--budget", "24"]), ({"token_budget": 40}, ["--budget", "40"]),
                            ({"policy": "never"}, ["--policy", "never"]), ({"policy": "never"}, ["--mode", "base"]),
                            ({"score_method": "digit-softmax", "threshold": 5}, ["--score", "digit-softmax", "--threshold", "5"]),
                            ({"max_step_tokens": 8, "max_answer_tokens": 4},
                             ["--max-step-tokens", "8", "--max-answer-tokens", "4"])]:
            st, r = s.chat(dict(msg(PROMPTS[1]), **body))
            c = cli_text(PROMPTS[1], *flags)
            check(st == 200 and full_text(r) == c["text"], "server == cli with %s" % body)
            if body.get("policy") == "never":
                check(r["specreason"]["judged"] == 0 and r["specreason"]["steps_by_author"]["small"] == 0,
                      "policy never: base only %s" % r["specreason"])
        # The whole result on request, as the library writes it (what specreason-eval --server reads).
        st, r = s.chat(dict(msg(PROMPTS[1]), specreason_result=True))
        c = cli_text(PROMPTS[1])
        res = r["specreason"].get("result") if st == 200 else None
        check(isinstance(res, dict) and res["text"] == c["text"] and res["answer"] == c["answer"] and
              res["stop"] == c["stop"] and [x["text"] for x in res["steps"]] == [x["text"] for x in c["steps"]] and
              set(res["stats"]) == set(c["stats"]) and res["policy"] == "always", "specreason.result == cli --json")
        st, r = s.chat(msg(PROMPTS[1]))
        check(st == 200 and "result" not in r["specreason"], "no result unless asked")
        # Sampling: the same seed gives the same text, another seed another one.
        sampled = [s.chat(dict(msg(PROMPTS[1]), temperature=0.8, seed=sd))[1] for sd in (5, 5, 6)]
        check(full_text(sampled[0]) == full_text(sampled[1]), "same seed, same text")
        check(full_text(sampled[0]) != full_text(sampled[2]), "another seed, another text")
        # Multi-turn with a system message is accepted and rendered (different prompt, more tokens).
        st, r1 = s.chat(msg(PROMPTS[0]))
        st2, r2 = s.chat({"messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Hi"},
                                       {"role": "assistant", "content": "Hello."},
                                       {"role": "user", "content": [{"type": "text", "text": PROMPTS[0]}]}]})
        check(st2 == 200 and r2["usage"]["prompt_tokens"] > r1["usage"]["prompt_tokens"] + 5,
              "multi-turn prompt tokens %s vs %s" % (r2.get("usage"), r1.get("usage")))

        # Streaming: the deltas add up to the non-streaming message; usage chunk; [DONE].
        st, r = s.chat(msg(PROMPTS[2]))
        st, evs, done = s.stream(dict(msg(PROMPTS[2]), stream_options={"include_usage": True}))
        check(st == 200 and done, "stream status/done")
        rc = "".join(e["choices"][0]["delta"].get("reasoning_content", "") for e in evs if e["choices"])
        cc = "".join(e["choices"][0]["delta"].get("content", "") for e in evs if e["choices"])
        check(rc == r["choices"][0]["message"]["reasoning_content"], "streamed reasoning == message")
        check(cc == r["choices"][0]["message"]["content"], "streamed content == message")
        n_reason = sum(1 for e in evs if e["choices"] and "reasoning_content" in e["choices"][0]["delta"])
        check(n_reason == len(r["specreason"]["steps"]), "one reasoning chunk per step (%d vs %d)" %
              (n_reason, len(r["specreason"]["steps"])))
        check(evs[-1]["choices"] == [] and evs[-1]["usage"] == r["usage"], "usage chunk last")
        fin = [e for e in evs if e["choices"] and e["choices"][0]["finish_reason"]]
        check(len(fin) == 1 and "specreason" in fin[0], "one finish chunk with stats")
        st, evs, done = s.stream(msg(PROMPTS[2]))
        check(done and all(e["choices"] for e in evs), "no usage chunk unless asked")

        # server == CLI while other requests run beside it.
        results = {}

        def bg(i):
            results[i] = s.chat(dict(msg(PROMPTS[i % 3]), token_budget=128))
        ths = [threading.Thread(target=bg, args=(i,)) for i in range(2)]
        for t in ths:
            t.start()
        time.sleep(0.3)
        st, r = s.chat(msg(PROMPTS[0]))
        for t in ths:
            t.join()
        check(st == 200 and full_text(r) == cli_text(PROMPTS[0])["text"], "server == cli beside other requests")
        for i, (st, r) in results.items():
            c = cli_text(PROMPTS[i % 3], "--budget", "128")
            check(st == 200 and full_text(r) == c["text"], "background request %d == cli" % i)
        check(sum(1 for l in s.log if "POST /v1/chat/completions" in l) >= 15, "one log line per request")
    finally:
        s.stop()


def part_errors():
    s = Server("--parallel", "1", "--queue", "0", "--max-body-bytes", "16384")
    try:
        cases = [
            (b"{", 400, None, "invalid_json"),
            (b"[1,2]", 400, None, "invalid_json"),
            (b"", 400, None, "invalid_json"),
            ({"model": "specreason"}, 400, "messages", "missing_field"),
            ({"messages": []}, 400, "messages", "invalid_value"),
            ({"messages": "hi"}, 400, "messages", "invalid_type"),
            ({"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role", "invalid_value"),
            ({"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content", "invalid_type"),
            ({"messages": [{"content": "x"}]}, 400, "messages[0].role", "missing_field"),
            ({"messages": [{"role": "tool", "content": "x"}]}, 400, "messages[0].role", "unsupported_parameter"),
            (dict(msg("x"), model="gpt-4o"), 404, "model", "model_not_found"),
            (dict(msg("x"), temperature="warm"), 400, "temperature", "invalid_type"),
            (dict(msg("x"), max_tokens=0), 400, "max_tokens", "invalid_value"),
            (dict(msg("x"), stream="yes"), 400, "stream", "invalid_type"),
            (dict(msg("x"), threshold=12), 400, "threshold", "invalid_value"),
            (dict(msg("x"), mode="turbo"), 400, "mode", "invalid_value"),
            (dict(msg("x"), policy="sometimes"), 400, "policy", "invalid_value"),
            (dict(msg("x"), max_step_tokens=0), 400, "max_step_tokens", "invalid_value"),
            (dict(msg("x"), specreason_result="yes"), 400, "specreason_result", "invalid_type"),
            (dict(msg("x"), seed=-1), 400, "seed", "invalid_value"),
            (dict(msg("x"), stop=[1]), 400, "stop", "invalid_type"),
            (dict(msg("x"), n=2), 400, "n", "unsupported_parameter"),
            (dict(msg("x"), tools=[{"type": "function", "function": {"name": "f"}}]), 400, "tools",
             "unsupported_parameter"),
            (dict(msg("x"), logprobs=True), 400, "logprobs", "unsupported_parameter"),
            (dict(msg("word " * 2500)), 400, "messages", "context_length_exceeded"),
            (b'{"messages":[{"role":"user","content":"' + b"x" * 20000 + b'"}]}', 413, None, "request_too_large"),
        ]
        for body, status, param, code in cases:
            st, r = s.chat(body)
            check(st == status and is_error(r, status, param, code),
                  "bad input %.80r: %s %s" % (body, st, json.dumps(r)[:300]))
        # The same prompt-too-long while streaming is a plain 400 too (nothing was streamed yet).
        st, evs, _ = s.stream(dict(msg("word " * 2500)))
        check(st == 400 and is_error(evs[0], 400, "messages", "context_length_exceeded"), "stream prompt too long")
        st, raw = s.request("GET", "/nope")
        check(st == 404 and is_error(json.loads(raw), 404), "unknown path 404")
        st, raw = s.request("GET", "/v1/chat/completions")
        check(st == 405 and is_error(json.loads(raw), 405), "wrong method 405")
        # Queue full: one session, no queue: a second request while one runs gets 429.
        got = {}
        started = threading.Event()

        def long_run():
            got["a"] = s.stream(dict(msg("count"), token_budget=400), on_event=lambda e: started.set())
        t = threading.Thread(target=long_run)
        t.start()
        started.wait(120)
        st, r = s.chat(msg("x"))
        check(st == 429 and is_error(r, 429, None, "queue_full"), "queue full 429: %s %s" % (st, r))
        t.join()
        check(got["a"][0] == 200 and got["a"][2], "the running request finished")
        # Still serving.
        st, r = s.chat(msg(PROMPTS[0]))
        check(st == 200 and r["choices"][0]["message"]["reasoning_content"], "serves after bad input")
        mt = s.metrics()
        check(mt.get('specreason_requests_total{status="400"}', 0) >= 20, "400s counted in metrics")
        check(mt.get('specreason_requests_total{status="429"}', 0) == 1, "429 counted in metrics")
    finally:
        s.stop()
    # API key: 401 without or with a wrong key, 200 with it; /health stays public.
    env = dict(os.environ, SPECREASON_API_KEY="sekrit")
    s = Server("--parallel", "1", env=env)
    try:
        st, r = s.chat(msg("x"))
        check(st == 401 and is_error(r, 401, None, "invalid_api_key"), "no key 401")
        st, r = s.chat(msg("x"), headers={"Authorization": "Bearer nope"})
        check(st == 401 and is_error(r, 401), "wrong key 401")
        st, raw = s.request("GET", "/v1/models")
        check(st == 401, "models need the key")
        st, raw = s.request("GET", "/health")
        check(st == 200, "health is public")
        st, r = s.chat(msg(PROMPTS[0]), headers={"Authorization": "Bearer sekrit"})
        check(st == 200, "right key 200")
    finally:
        s.stop()


def raw_stream_until_first_step(port, body):
    """Opens a streaming request on a raw socket, reads until the first reasoning chunk, returns the socket."""
    sk = socket.create_connection(("127.0.0.1", port), timeout=300)
    data = json.dumps(dict(body, stream=True)).encode()
    sk.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(data) + data)
    got = b""
    while b"reasoning_content" not in got:
        c = sk.recv(65536)
        if not c:
            break
        got += c
    return sk, got


def part_disconnect():
    # One session, no queue: the session is free again only if the dropped stream stopped.
    s = Server("--parallel", "1", "--queue", "0", "--ctx", "8192")
    try:
        big = dict(msg("Tell me everything."), token_budget=6000, max_tokens=6000)
        sk, got = raw_stream_until_first_step(s.port, big)
        check(b"reasoning_content" in got, "stream started")
        sk.close()
        deadline = time.time() + 60
        mt = {}
        while time.time() < deadline:
            mt = s.metrics()
            if mt.get('specreason_requests_total{status="cancelled"}', 0) >= 1:
                break
            time.sleep(0.1)
        check(mt.get('specreason_requests_total{status="cancelled"}', 0) == 1, "cancelled request counted")
        check(mt.get("specreason_requests_active", 1) == 0, "session freed after disconnect")
        st, r = s.chat(msg(PROMPTS[0]))
        check(st == 200, "the freed session serves the next request (%s)" % st)
        check(any("cancelled" in l and "POST" in l for l in s.log), "cancel logged")
        # A non-streaming request whose client goes away is cancelled too.
        sk = socket.create_connection(("127.0.0.1", s.port), timeout=60)
        data = json.dumps(big).encode()
        sk.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data) + data)
        time.sleep(1.0)
        sk.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            mt = s.metrics()
            if mt.get('specreason_requests_total{status="cancelled"}', 0) >= 2:
                break
            time.sleep(0.1)
        check(mt.get('specreason_requests_total{status="cancelled"}', 0) == 2 and
              mt.get("specreason_requests_active", 1) == 0, "non-streaming disconnect cancelled")
        st, r = s.chat(msg(PROMPTS[1]))
        check(st == 200, "serves after the second disconnect")
    finally:
        s.stop()


def part_overlap():
    s = Server("--parallel", "2", "--queue", "0")
    try:
        t_first, t_done = {}, {}

        def run(k):
            def ev(e):
                if e["choices"] and "reasoning_content" in e["choices"][0]["delta"] and k not in t_first:
                    t_first[k] = time.monotonic()
            st, evs, done = s.stream(dict(msg("Count to one hundred."), token_budget=300), on_event=ev)
            t_done[k] = time.monotonic() if st == 200 and done else None
        ths = [threading.Thread(target=run, args=(k,)) for k in "ab"]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        ok = len(t_first) == 2 and None not in t_done.values()
        check(ok, "both streams finished")
        if ok:
            # Each request produced a step before the other one ended: they ran at the same time.
            check(max(t_first.values()) < min(t_done.values()),
                  "overlap: first steps %s, ends %s" % (t_first, t_done))
    finally:
        s.stop()


def part_load():
    s = Server("--parallel", "2", "--queue", "2")
    try:
        statuses = []
        lock = threading.Lock()

        def client(i):
            for k in range(3):
                body = dict(msg(PROMPTS[(i + k) % 3]), token_budget=32)
                if k == 1:
                    st, evs, done = s.stream(body)
                    good = (st == 200 and done) or (st == 429 and is_error(evs[0], 429))
                else:
                    st, r = s.chat(body)
                    good = (st == 200 and "choices" in r) or (st == 429 and is_error(r, 429, None, "queue_full"))
                with lock:
                    statuses.append((st, good))
        ths = [threading.Thread(target=client, args=(i,)) for i in range(5)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        check(len(statuses) == 15 and all(g for _, g in statuses), "load: all answered or refused: %s" % statuses)
        check(sum(1 for st, _ in statuses if st == 200) >= 4, "load: most requests answered")
        st, raw = s.request("GET", "/health")
        check(st == 200, "healthy after load")
        mt = s.metrics()
        check(mt.get("specreason_requests_active") == 0 and mt.get("specreason_queue_depth") == 0, "idle after load")
        n200 = sum(1 for st, _ in statuses if st == 200)
        check(mt.get('specreason_requests_total{status="200"}') == n200, "metrics count the 200s")
        check(mt.get("specreason_request_duration_seconds_count") == n200 and
              mt.get("specreason_time_to_first_token_seconds_count") == n200, "histograms count the runs")
        check(mt.get("specreason_judge_calls_total", 0) > 0 and
              mt.get('specreason_tokens_total{model="base",kind="prompt"}', 0) > 0, "token and judge counters")
    finally:
        s.stop()


for part in PARTS:
    t0 = time.time()
    globals()["part_" + part]()
    print("part %s: %.1fs" % (part, time.time() - t0), flush=True)
print("%d checks, %d failed" % (checks, len(failures)))
sys.exit(1 if failures else 0)
