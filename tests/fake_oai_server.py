#!/usr/bin/env python3
"""fake_oai_server.py PORT MODE: a tiny OpenAI-compatible server (vLLM-shaped answers) for the
remote backend's fault tests. Binds 127.0.0.1:PORT (0 = any free port; the port is printed on
the first line of stdout). MODE:
  ok            valid answers
  500x2         the first two /v1/completions answer HTTP 500, then valid answers
  truncated1    the first /v1/completions promises more bytes than it sends, then valid answers
  garbage       /v1/completions answers 200 with a body that is not JSON
  nologprobs    the judge's answer has no logprobs
  hang          /v1/completions accepts and never answers
  die-after-N   exits (connection refused from then on) after N /v1/completions
  key           like ok, but every request needs "Authorization: Bearer sekrit"
Generation: three steps "Step k: ..." (stop = the delimiter), the third with \\boxed{2}; the
judge always answers "9" (legacy vLLM logprobs); the answer is " The answer is 2.".
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = sys.argv[2] if len(sys.argv) > 2 else "ok"
lock = threading.Lock()
state = {"completions": 0, "steps": 0}


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def authorized(self):
        if MODE != "key":
            return True
        if self.headers.get("Authorization") == "Bearer sekrit":
            return True
        self.send_json(401, {"error": {"message": "invalid api key", "code": 401}})
        return False

    def do_GET(self):
        if self.path == "/health":  # public, as on llama-server
            self.send_json(200, {})
            return
        if not self.authorized():
            return
        if self.path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [{"id": "fake-model", "max_model_len": 32768}]})
        else:
            self.send_json(404, {"detail": "Not Found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        if not self.authorized():
            return
        try:
            req = json.loads(raw)
        except ValueError:
            self.send_json(400, {"error": {"message": "bad json"}})
            return
        if self.path == "/tokenize":
            p = req.get("prompt", "")
            self.send_json(200, {"count": len(p.split()), "tokens": list(range(len(p.split()))), "max_model_len": 32768})
            return
        if self.path != "/v1/completions":
            self.send_json(404, {"detail": "Not Found"})
            return
        with lock:
            state["completions"] += 1
            k = state["completions"]
        if MODE.startswith("die-after-") and k > int(MODE[len("die-after-"):]):
            os._exit(0)
        if MODE == "500x2" and k <= 2:
            self.send_json(500, {"error": {"message": "transient failure %d" % k}})
            return
        if MODE == "truncated1" and k == 1:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"choices":[{"text":"tru')
            self.wfile.flush()
            self.close_connection = True
            return
        if MODE == "garbage":
            body = b"<html>502 Bad Gateway</html>{"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if MODE == "hang":
            time.sleep(3600)
            return
        prompt = req.get("prompt", "")
        ptoks = len(prompt) if isinstance(prompt, list) else len(prompt.split())
        judge = req.get("max_tokens") == 1 and req.get("logprobs")
        if judge:
            choice = {"index": 0, "text": "9", "finish_reason": "length", "stop_reason": None,
                      "logprobs": {"tokens": ["9"], "token_logprobs": [-0.1],
                                   "top_logprobs": [{"9": -0.1, "3": -2.5, "x": -4.0}], "text_offset": [0]}}
            if MODE == "nologprobs":
                choice["logprobs"] = None
            ctoks = 1
        elif req.get("stop"):
            with lock:
                state["steps"] += 1
                s = state["steps"]
            text = "Step %d: one plus one is two" % s if s < 3 else "So the answer is \\boxed{2}."
            choice = {"index": 0, "text": text, "finish_reason": "stop", "stop_reason": req["stop"][0], "logprobs": None}
            ctoks = len(text.split()) + 1
        else:
            choice = {"index": 0, "text": " The answer is 2.", "finish_reason": "stop", "stop_reason": None, "logprobs": None}
            ctoks = 6
        self.send_json(200, {"id": "cmpl-%d" % k, "object": "text_completion", "model": "fake-model",
                             "choices": [choice],
                             "usage": {"prompt_tokens": ptoks, "completion_tokens": ctoks, "total_tokens": ptoks + ctoks}})


def main():
    srv = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
    srv.daemon_threads = True
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
