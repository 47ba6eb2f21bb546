"""cdp.py: a tiny Chrome DevTools Protocol client over --remote-debugging-pipe (standard library
only: the browser reads NUL-terminated JSON messages on fd 3 and writes them on fd 4), enough for
tests/test_web.py to load a page, type, press keys, evaluate JavaScript and take screenshots in a
real headless Chromium.
"""
import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser():
    env = os.environ.get("SR_CHROMIUM")
    if env:
        return env if shutil.which(env) or os.path.exists(env) else None
    for c in CANDIDATES:
        p = shutil.which(c)
        if p:
            return p
    return None


class CDPError(Exception):
    pass


class Browser:
    def __init__(self, exe, profile_dir, log_path):
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        # The child's ends above fd 4, so that moving them to 3 and 4 cannot clobber one another.
        hi = []
        for fd in (to_child_r, from_child_w):
            hi.append(fcntl.fcntl(fd, fcntl.F_DUPFD, 20))
            os.close(fd)
        to_child_r, from_child_w = hi
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio",
                "--remote-debugging-pipe", f"--user-data-dir={profile_dir}", "about:blank"]
        # fd 3 = what we write, fd 4 = what we read; bash moves them into place (dash has no fd above 9).
        script = f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-'
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(["bash", "-c", script] + args, pass_fds=(to_child_r, from_child_w),
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        os.close(to_child_r)
        os.close(from_child_w)
        self._next = 0
        self._replies = {}
        self._cv = threading.Condition()
        self.events = queue.Queue()
        self._closed = False
        self._t = threading.Thread(target=self._reader, daemon=True)
        self._t.start()

    def _reader(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cv:
                    self._closed = True
                    self._cv.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                m = json.loads(msg)
                if "id" in m:
                    with self._cv:
                        self._replies[m["id"]] = m
                        self._cv.notify_all()
                else:
                    self.events.put(m)

    def call(self, method, params=None, session=None, timeout=60):
        self._next += 1
        mid = self._next
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cv:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if self._closed:
                    raise CDPError(f"{method}: the browser went away")
                if left <= 0:
                    raise CDPError(f"{method}: no reply in {timeout} s")
                self._cv.wait(left)
            m = self._replies.pop(mid)
        if "error" in m:
            raise CDPError(f"{method}: {m['error']}")
        return m.get("result", {})

    def close(self):
        try:
            self.call("Browser.close", timeout=10)
        except CDPError:
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()


class Page:
    """One tab, attached with a flat session."""

    def __init__(self, browser, width=1100, height=1400):
        self.b = browser
        tid = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.sid = browser.call("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.viewport(width, height)

    def call(self, method, params=None, timeout=60):
        return self.b.call(method, params, self.sid, timeout)

    def viewport(self, width, height, mobile=False):
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    def color_scheme(self, value):
        self.call("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": value}]})

    def eval(self, expr, timeout=60):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True},
                      timeout)
        if "exceptionDetails" in r:
            raise CDPError(f"evaluate {expr[:80]!r}: {r['exceptionDetails']}")
        return r.get("result", {}).get("value")

    def goto(self, url, timeout=30):
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete'", timeout)

    def wait_for(self, expr, timeout=60, interval=0.1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.eval(f"!!({expr})"):
                return True
            time.sleep(interval)
        return False

    def insert_text(self, text):
        self.call("Input.insertText", {"text": text})

    def key(self, key, code=None, vk=0, modifiers=0, text=None):
        """Presses a key; with text, the press also types it (Enter on a button or summary needs "\r")."""
        base = {"key": key, "code": code or key, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk,
                "modifiers": modifiers}
        if text is None:
            self.call("Input.dispatchKeyEvent", dict(base, type="rawKeyDown"))
        else:
            self.call("Input.dispatchKeyEvent", dict(base, type="keyDown", text=text, unmodifiedText=text))
        self.call("Input.dispatchKeyEvent", dict(base, type="keyUp"))

    def screenshot(self, path, full_page=True):
        params = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            m = self.call("Page.getLayoutMetrics")
            size = m.get("cssContentSize") or m.get("contentSize")
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot", params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path
