#!/usr/bin/env python3
"""test_web.py PART SERVER SMALL BASE WEBDIR WORKDIR: the live page of specreason-server in a real
headless Chromium (tests/cdp.py: DevTools protocol over a pipe, standard library only).

PART is one of:
  live    the real server on a free loopback port with the generated models: GET / and the page's
          files are the bytes of web/ (with a content security policy); the stream carries a
          `specreason` object per step; in the browser, a prompt typed into the page and sent with
          Ctrl+Enter streams to the end and the DOM shows exactly the server's steps with their
          author marks, the answer (or none, as the server's response says), the live figures; the
          <script> in the prompt shows as text; a request the server refuses shows its error
          message. Screenshots (desktop light, narrow dark) go to WORKDIR.
  render  the same page served by a stub that replays a crafted stream (what the generated models
          cannot write): <script> and markup in steps, rejected drafts and the answer shown as
          text, every author mark, an unmarked chunk, the answer apart, the controller's speedup
          estimate, the error message of a failed request. Screenshot to WORKDIR.
Exits 77 (skipped) when no Chromium can be found (scripts/setup.sh installs Debian's `chromium`).
"""
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cdp  # noqa: E402

PART, SERVER, SMALL, BASE, WEBDIR, WORK = sys.argv[1:7]
FAILS = []
EVIL = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"
KNOWN_AUTHORS = {"small", "base-reject", "base-forced", "small-only"}


def check(cond, msg):
    if not cond:
        FAILS.append(msg)
        print("FAIL:", msg, flush=True)
    return cond


def request(method, url, body=None, headers=None, timeout=120):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def sse_chunks(raw):
    out = []
    for ev in raw.decode("utf-8").split("\n\n"):
        for line in ev.split("\n"):
            if line.startswith("data: "):
                d = line[6:]
                out.append(d if d == "[DONE]" else json.loads(d))
    return out


# ---------------------------------------------------------------- the page in the browser
DOM_JS = r"""JSON.stringify((() => {
  const $ = (id) => document.getElementById(id);
  const steps = [...document.querySelectorAll('#steps > li.step')].map((li) => ({
    author: li.dataset.author, cls: li.className, mark: li.querySelector('.mark').textContent,
    score: li.querySelector('.mark .score') ? li.querySelector('.mark .score').textContent : null,
    text: li.querySelector(':scope > .text').textContent,
    draft: li.querySelector('details .text') ? li.querySelector('details .text').textContent : null,
    draftSummary: li.querySelector('details summary') ? li.querySelector('details summary').textContent : null,
    children: li.querySelectorAll('.text *').length,
  }));
  return {
    state: document.body.dataset.state, steps,
    error: $('error').hidden ? null : $('error').textContent,
    answerHidden: $('answer').hidden, answer: $('answer-text').textContent,
    echo: $('echo').textContent, echoChildren: $('echo').children.length,
    stepsN: $('fig-steps').firstChild ? $('fig-steps').firstChild.textContent : '',
    figs: Object.fromEntries(['acceptance', 'steps', 'tps', 'elapsed', 'speedup'].map((k) => [k, $('fig-' + k).textContent])),
    split: ['draft', 'judge', 'base', 'other'].map((k) => parseFloat($('seg-' + k).style.width) || 0),
    splitText: ['draft', 'judge', 'base', 'other'].map((k) => $('t-' + k).textContent),
    finish: $('finish').textContent,
    pwned: window.__pwned === undefined ? null : window.__pwned,
    scripts: document.scripts.length, imgs: document.images.length,
    server: $('server').textContent,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
  };
})())"""


def dom(page):
    return json.loads(page.eval(DOM_JS))


def set_knobs(page, knobs):
    for k, v in knobs.items():
        if isinstance(v, bool):
            page.eval(f"document.getElementById({json.dumps(k)}).checked = {json.dumps(v)}")
        else:
            page.eval(f"document.getElementById({json.dumps(k)}).value = {json.dumps(str(v))}")


def type_and_run(page, prompt):
    """Types the prompt into the focused textarea and sends it with Ctrl+Enter (the keyboard path)."""
    page.eval("(() => { const t = document.getElementById('prompt'); t.value = ''; t.focus(); })()")
    page.insert_text(prompt)
    page.key("Enter", "Enter", 13, modifiers=2)
    return page.wait_for("['done', 'error', 'stopped'].includes(document.body.dataset.state)", timeout=240)


def open_browser():
    exe = cdp.find_browser()
    if not exe:
        print("SKIP: no Chromium found (scripts/setup.sh installs Debian's 'chromium'; or set SR_CHROMIUM)")
        sys.exit(77)
    prof = os.path.join(WORK, "profile")
    shutil.rmtree(prof, ignore_errors=True)
    return cdp.Browser(exe, prof, os.path.join(WORK, "chromium.log"))


def norm(s):
    return re.sub(r"\s+", "", s)


# ---------------------------------------------------------------- live: the real server
def start_server():
    log = open(os.path.join(WORK, "server.log"), "w")
    args = [SERVER, "--small", SMALL, "--base", BASE, "--port", "0", "--ctx", "2048", "--threads", "1",
            "--budget", "40", "--max-step-tokens", "10", "--max-answer-tokens", "8", "--greedy", "--policy", "always"]
    p = subprocess.Popen(args, stdout=log, stderr=subprocess.PIPE, text=True)
    url = None
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listening on (http://[0-9.:]+)", line)
        if m:
            url = m.group(1)
            break
    if not url:
        p.kill()
        raise SystemExit(f"the server did not start: {''.join(lines)}")
    def copy():
        for x in p.stderr:
            log.write(x)
            log.flush()
    threading.Thread(target=copy, daemon=True).start()
    while time.monotonic() < deadline:
        try:
            if request("GET", url + "/health", timeout=5)[0] == 200:
                return p, url
        except OSError:
            pass
        time.sleep(0.2)
    p.kill()
    raise SystemExit("the server never became healthy")


def part_live():
    server, url = start_server()
    browser = None
    try:
        # the page's files are web/'s bytes, with their types and a content security policy
        for name, ctype in (("index.html", "text/html"), ("app.js", "text/javascript"), ("page.css", "text/css"),
                            ("steps.css", "text/css")):
            st, hd, body = request("GET", f"{url}/{name}")
            with open(os.path.join(WEBDIR, name), "rb") as f:
                want = f.read()
            check(st == 200 and body == want, f"GET /{name}: {st}, {len(body)} bytes, same as web/: {body == want}")
            check(hd.get("Content-Type", "").startswith(ctype), f"/{name} content type {hd.get('Content-Type')}")
            check("script-src 'self'" in hd.get("Content-Security-Policy", ""), f"/{name}: CSP")
        st, _, body = request("GET", url + "/")
        check(st == 200 and b"<title>specreason</title>" in body, "GET / is the page")
        st, _, body = request("GET", url + "/?prompt=x&run=1")
        check(st == 200 and b"<title>specreason</title>" in body, "GET / with a query is the page")
        st, _, body = request("GET", url + "/nope.js")
        check(st == 404 and b"error" in body, f"GET /nope.js: {st}")

        prompt = "What is 2+3? " + EVIL + " & 'quotes'"
        knobs = {"mode": "spec", "threshold": 5, "first_n_base": 1, "score_method": "greedy", "temperature": 0,
                 "seed": 3, "spec_decode": False}
        body = {"messages": [{"role": "user", "content": prompt}], "mode": "spec", "threshold": 5,
                "first_n_base": 1, "score_method": "greedy", "temperature": 0, "seed": 3, "spec_decode": False}
        st, _, raw = request("POST", url + "/v1/chat/completions", body)
        check(st == 200, f"non-streaming request: {st} {raw[:300]}")
        ref = json.loads(raw)
        msg = ref["choices"][0]["message"]
        ref_steps = ref["specreason"]["steps"]
        ref_authors = [s["author"] for s in ref_steps]
        print(f"reference: {len(ref_steps)} steps {ref_authors}, content {msg['content']!r}")
        check(len(ref_steps) >= 2, "the reference run has steps")

        # the stream's extension: one `specreason` object per step, the same steps as the response
        st, hd, raw = request("POST", url + "/v1/chat/completions", dict(body, stream=True))
        chunks = sse_chunks(raw)
        check(st == 200 and chunks and chunks[-1] == "[DONE]", f"stream: {st}")
        objs = [c for c in chunks if isinstance(c, dict)]
        steps = [c for c in objs if c.get("specreason", {}).get("step") is not None]
        check([c["specreason"]["step"] for c in steps] == list(range(len(ref_steps))), "step indices 0..n-1")
        check([c["specreason"]["author"] for c in steps] == ref_authors, "stream authors == response authors")
        check("".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in objs) ==
              msg["reasoning_content"], "stream reasoning == response reasoning")
        for c, r in zip(steps, ref_steps):
            x = c["specreason"]
            check(x["tokens"] == r["tokens"] and x.get("score") == r.get("score"), f"step {x['step']}: tokens, score")
            check(all(isinstance(x.get(k), (int, float)) for k in ("t_ms", "t_draft_ms", "t_judge_ms", "t_base_ms")),
                  "step times")
            if x["author"] == "base-reject":
                check(isinstance(x.get("rejected_draft"), str) and x.get("draft_score") == r.get("draft_score"),
                      f"step {x['step']}: rejected draft and its score")
            else:
                check("rejected_draft" not in x, f"step {x['step']}: no rejected draft")
        final = [c for c in objs if c.get("choices") and c["choices"][0].get("finish_reason")]
        check(len(final) == 1 and "time_ms" in final[0].get("specreason", {}), "final chunk carries the statistics")

        browser = open_browser()
        page = cdp.Page(browser, 1100, 1300)
        page.color_scheme("light")
        page.goto(url + "/")
        check(page.wait_for("document.getElementById('server').textContent.startsWith('model')", 30),
              "the page found the model")
        set_knobs(page, knobs)
        check(type_and_run(page, prompt), "the run finished in the page")
        d = dom(page)
        print("page:", json.dumps({k: d[k] for k in ("state", "figs", "split", "finish", "answerHidden")}))
        check(d["state"] == "done", f"state {d['state']} (error: {d['error']})")
        check([s["author"] for s in d["steps"]] == ref_authors, f"page authors {[s['author'] for s in d['steps']]}")
        for s in d["steps"]:
            check(s["author"] in KNOWN_AUTHORS and f"a-{s['author']}" in s["cls"].split() and s["mark"].strip(),
                  f"step marked by its author: {s}")
            check(s["children"] == 0, "step text has no elements")
            if s["author"] == "small":
                check(s["score"] is not None and float(s["score"]) >= 5, f"accepted step shows its score: {s}")
            if s["author"] == "base-reject":
                check(s["draft"] is not None and "rejected draft" in s["draftSummary"], f"rejected draft: {s}")
        check(norm("".join(s["text"] for s in d["steps"])) == norm(msg["reasoning_content"]),
              "page steps == the server's reasoning")
        if msg["content"]:
            check(not d["answerHidden"] and d["answer"].strip() == msg["content"].strip(), "answer set apart")
        else:
            check(d["answerHidden"], "no answer box when the server returned no answer")
        check(d["echo"] == prompt and d["echoChildren"] == 0, "the prompt with <script> shows as text")
        check(d["pwned"] is None and d["scripts"] == 1 and d["imgs"] == 0, "nothing injected ran or was inserted")
        n = len(ref_steps)
        check(d["stepsN"] == str(n), f"steps figure {d['figs']['steps']}")
        judged = ref["specreason"]["judged"]
        if judged:
            pct = f"{100 * ref['specreason']['acceptance']:.0f}%"
            check(d["figs"]["acceptance"].startswith(pct), f"acceptance figure {d['figs']['acceptance']} != {pct}")
        check(re.match(r"^[0-9.]+$", d["figs"]["tps"]) is not None, f"tokens/s figure {d['figs']['tps']}")
        check(d["figs"]["elapsed"] != "\u2013", "elapsed figure")
        check(abs(sum(d["split"]) - 100) < 0.5 and d["split"][0] > 0 and d["split"][1] > 0,
              f"time split {d['split']} (drafting and judging > 0)")
        check(d["figs"]["speedup"] == "\u2013", "no speedup estimate unless the server reports one")
        check(d["overflow"] <= 1, f"no horizontal overflow ({d['overflow']} px)")
        page.screenshot(os.path.join(WORK, "web_live.png"))

        # narrow screen, dark preference
        page.viewport(390, 900, mobile=True)
        page.color_scheme("dark")
        time.sleep(0.3)
        d2 = dom(page)
        check(d2["overflow"] <= 1, f"narrow screen: no horizontal overflow ({d2['overflow']} px)")
        bg = page.eval("getComputedStyle(document.body).backgroundColor")
        check(bg in ("rgb(13, 17, 23)",), f"dark preference: background {bg}")
        page.screenshot(os.path.join(WORK, "web_live_narrow_dark.png"))
        page.viewport(1100, 1300)
        page.color_scheme("light")

        # a request the server refuses: its error message on the page
        bad = dict(body, threshold=11, stream=True)
        st, _, raw = request("POST", url + "/v1/chat/completions", bad)
        srv_msg = json.loads(raw)["error"]["message"] if raw else ""
        check(st == 400 and srv_msg, f"threshold 11 refused: {st} {raw[:200]}")
        set_knobs(page, {"threshold": 11})
        check(type_and_run(page, "again"), "the refused run ended")
        d = dom(page)
        check(d["state"] == "error" and d["error"] and "HTTP 400" in d["error"] and srv_msg in d["error"],
              f"error shown: {d['error']!r} (server said {srv_msg!r})")
        page.screenshot(os.path.join(WORK, "web_live_error.png"))

        # Esc stops a long run: the page closes the stream, the server cancels the run and serves
        # the next one (one session: --parallel 1)
        set_knobs(page, {"threshold": 5, "max_tokens": 1500})
        page.eval("(() => { const t = document.getElementById('prompt'); t.value = 'long'; t.focus(); })()")
        page.key("Enter", "Enter", 13, modifiers=2)
        check(page.wait_for("document.querySelectorAll('#steps > li.step').length >= 1", 120), "the long run streams")
        page.key("Escape", "Escape", 27)
        check(page.wait_for("document.body.dataset.state === 'stopped'", 20), "Esc stops the run")
        deadline = time.monotonic() + 60
        log_path = os.path.join(WORK, "server.log")
        while time.monotonic() < deadline and "cancelled" not in open(log_path).read():
            time.sleep(0.2)
        check("cancelled" in open(log_path).read(), "the server cancelled the stopped run")
        set_knobs(page, {"max_tokens": ""})
        check(type_and_run(page, prompt), "a run after the stop")
        d = dom(page)
        check(d["state"] == "done" and [s["author"] for s in d["steps"]] == ref_authors,
              f"the next run is served and is the same: {d['state']}")
    finally:
        if browser:
            browser.close()
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    check(server.returncode == 0, f"server exit {server.returncode} after SIGTERM")


# ---------------------------------------------------------------- render: a replayed stream
def crafted_stream():
    def ch(delta, ext=None, finish=None):
        c = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "stub",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if ext is not None:
            c["specreason"] = ext
        return c

    t = {"t_ms": 30, "t_draft_ms": 10, "t_judge_ms": 5, "t_base_ms": 0}
    return [
        ch({"role": "assistant", "content": ""}),
        ch({"reasoning_content": "Step one " + EVIL + "\n\n"}, dict(t, step=0, author="small", score=8, tokens=9)),
        ch({"reasoning_content": "Step two by the base model.\n\n"},
           dict(t, step=1, author="base-reject", score=2, tokens=6, t_base_ms=20, draft_score=2, draft_tokens=7,
                rejected_draft="</details></li></ol><img src=x onerror=\"window.__pwned = 3\"> wrong draft")),
        ch({"reasoning_content": "Forced step.\n\n"}, dict(t, step=2, author="base-forced", score=None, tokens=3,
                                                        t_draft_ms=0, t_judge_ms=0, t_base_ms=12)),
        ch({"reasoning_content": "a chunk without metadata"}),
        ch({"content": "The answer is <b>42</b> " + EVIL}, {"author": "answer", "tokens": 5}),
        ch({}, {"stop": "answer", "judged": 2, "acceptance": 0.5, "steps_by_author": {"total": 3, "small": 1},
                "tokens_per_s": 12.5, "time_ms": {"small": 20, "judge": 10, "base": 32, "total": 80},
                "controller": {"predicted_speedup": 1.8}}, finish="stop"),
        "[DONE]",
    ]


class Stub(http.server.BaseHTTPRequestHandler):
    mode = "ok"

    def log_message(self, *a):
        pass

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/v1/models":
            return self.reply(200, "application/json", json.dumps({"object": "list", "data": [{"id": "stub"}]}))
        name = "index.html" if path == "/" else path.lstrip("/")
        types = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}
        fp = os.path.join(WEBDIR, name)
        if "/" in name or not os.path.isfile(fp):
            return self.reply(404, "application/json", '{"error":{"message":"no"}}')
        with open(fp, "rb") as f:
            self.reply(200, types.get(os.path.splitext(name)[1], "text/plain"), f.read())

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        req = json.loads(self.rfile.read(n))
        Stub.last = req
        if Stub.mode == "error":
            return self.reply(400, "application/json", json.dumps(
                {"error": {"message": "threshold: must be in [0, 10] <script>x</script>", "type": "invalid_request_error",
                           "param": "threshold", "code": "invalid_value"}}))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for c in crafted_stream():
            self.wfile.write(b"data: " + (c if isinstance(c, str) else json.dumps(c)).encode() + b"\n\n")
            self.wfile.flush()
            time.sleep(0.05)

    def reply(self, status, ctype, body):
        body = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def part_render():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    browser = open_browser()
    try:
        page = cdp.Page(browser, 1000, 1200)
        page.goto(url + "/?threshold=6&mode=spec&seed=9&spec_decode=1")
        check(page.wait_for("document.getElementById('server').textContent === 'model stub'", 30), "model listed")
        check(type_and_run(page, "prompt " + EVIL), "the run finished")
        d = dom(page)
        req = Stub.last
        check(req.get("stream") is True and req.get("model") == "stub" and req.get("threshold") == 6 and
              req.get("seed") == 9 and req.get("spec_decode") is True and req.get("mode") == "spec",
              f"knobs from the URL reach the request: {req}")
        check(req["messages"] == [{"role": "user", "content": "prompt " + EVIL}], "the prompt is sent as typed")
        check(d["state"] == "done", f"state {d['state']} {d['error']}")
        authors = [s["author"] for s in d["steps"]]
        check(authors == ["small", "base-reject", "base-forced", "unmarked"], f"authors {authors}")
        if len(d["steps"]) == 4:
            s0, s1, s2, s3 = d["steps"]
            check(s0["text"] == "Step one " + EVIL and s0["children"] == 0, "<script> in a step shows as text")
            check(s0["score"] == "8" and "accepted" in s0["mark"], f"accepted mark {s0['mark']}")
            check(s1["draft"].startswith("</details></li></ol><img") and "judge score 2" in s1["draftSummary"],
                  f"rejected draft as text under the rewrite: {s1}")
            check("rejection" in s1["mark"] and "forced" in s2["mark"] and s2["score"] is None, "marks")
            check(s3["text"] == "a chunk without metadata" and "no author mark" in s3["mark"], "unmarked chunk")
        check(not d["answerHidden"] and d["answer"] == "The answer is <b>42</b> " + EVIL, "answer set apart, as text")
        check(d["pwned"] is None and d["imgs"] == 0 and d["scripts"] == 1, "nothing injected")
        check(d["figs"]["acceptance"] == "50% (1/2)", f"acceptance {d['figs']['acceptance']}")
        check(d["stepsN"] == "4" and "1 rewritten" in d["figs"]["steps"], f"steps figure {d['figs']['steps']}")
        check(d["figs"]["speedup"] == "1.80\u00d7", f"speedup estimate {d['figs']['speedup']}")
        check(d["figs"]["tps"] == "12.5" and d["figs"]["elapsed"] == "80 ms", f"figures {d['figs']}")
        check(all(abs(a - b) < 0.1 for a, b in zip(d["split"], [25, 12.5, 40, 22.5])), f"time split {d['split']}")
        check("finish reason: stop" in d["finish"], f"finish {d['finish']}")
        page.eval("document.querySelectorAll('#steps details').forEach((x) => { x.open = true; })")
        page.screenshot(os.path.join(WORK, "web_render.png"))
        # keyboard: the rejected draft opens with Enter on its summary
        page.eval("document.querySelectorAll('#steps details').forEach((x) => { x.open = false; });"
                  "document.querySelector('#steps details summary').focus()")
        page.key("Enter", "Enter", 13, text="\r")
        check(page.eval("document.querySelector('#steps details').open") is True, "details open by keyboard")

        # a run linked from the URL starts by itself
        page.goto(url + "/?prompt=" + urllib.parse.quote("linked <b>run</b>") + "&threshold=4&run=1")
        check(page.wait_for("document.body.dataset.state === 'done'", 60), "a linked run (?run=1) runs")
        d = dom(page)
        check(d["echo"] == "linked <b>run</b>" and Stub.last.get("threshold") == 4 and len(d["steps"]) == 4,
              f"linked run: echo {d['echo']!r}, threshold {Stub.last.get('threshold')}")

        Stub.mode = "error"
        check(type_and_run(page, "bad"), "the refused run ended")
        d = dom(page)
        check(d["state"] == "error" and d["error"] ==
              "HTTP 400 Bad Request: threshold: must be in [0, 10] <script>x</script>", f"error {d['error']!r}")
        check(d["pwned"] is None and d["scripts"] == 1, "error text inserted as text")
    finally:
        browser.close()
        srv.shutdown()


os.makedirs(WORK, exist_ok=True)
{"live": part_live, "render": part_render}[PART]()
if FAILS:
    print(f"{len(FAILS)} check(s) failed")
    sys.exit(1)
print("all checks passed")
