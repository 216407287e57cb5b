"""HTTP on the harness's side: a keep-alive client, the job API on top of
it, the frontend's own latency histogram, and the receiver of the
observer's webhook calls."""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .config import TERMINAL, USERS


class Http:
    """A keep-alive HTTP/1.1 client, one connection per thread."""

    def __init__(self, base: str):
        u = urllib.parse.urlparse(base)
        self.host, self.port = u.hostname, u.port
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self.local.conn = c
        return c

    def request(self, method, path, body=None, token=None, headers=None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        # One retry on a fresh connection: the server may have closed an
        # idle keep-alive one.
        for attempt in (0, 1):
            c = self._conn()
            try:
                c.request(method, path, body=body, headers=h)
                r = c.getresponse()
                data = r.read()
                return r.status, data
            except (http.client.HTTPException, ConnectionError, OSError):
                c.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method, path, body=None, token=None, expect=(200, 201, 202)):
        status, data = self.request(method, path, body, token)
        if status not in expect:
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return json.loads(data) if data else None


class Api(Http):
    """The frontend's job API, as the scenarios use it."""

    def tokens(self, per_user: int) -> dict[str, list[str]]:
        """`per_user` bearer tokens for each of USERS, logged in once."""
        def login(user):
            r = self.request("POST", "/auth/token",
                             body=urllib.parse.urlencode({"username": user, "password": USERS[user]}).encode(),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
            if r[0] != 200:
                raise RuntimeError(f"login {user}: {r[0]} {r[1][:200]!r}")
            return json.loads(r[1])["token"]

        with ThreadPoolExecutor(4) as ex:
            return {u: list(ex.map(login, [u] * per_user)) for u in USERS}

    def submit(self, token: str, body: dict, route: str = "/api/jobs") -> str:
        return self.json("POST", route, body, token)["jobId"]

    def job(self, token: str, job_id: str) -> dict:
        return self.json("GET", f"/api/jobs/{job_id}", token=token)

    def count(self, token: str, status: str | None = None) -> int:
        q = "?per_page=1" + (f"&status={status}" if status else "")
        return self.json("GET", "/api/jobs" + q, token=token)["total"]

    def all_jobs(self, token: str, status: str | None = None) -> list[dict]:
        out, page = [], 1
        while True:
            q = f"?per_page=100&page={page}" + (f"&status={status}" if status else "")
            r = self.json("GET", "/api/jobs" + q, token=token)
            out += r["jobs"]
            if len(r["jobs"]) < 100:
                return out
            page += 1

    def wait_terminal(self, token: str, ids: list[str], timeout: float) -> list[dict]:
        """The records of `ids`, in that order, once all have finished."""
        deadline = time.monotonic() + timeout
        pending = set(ids)
        done = {}
        while pending:
            for i in list(pending):
                j = self.job(token, i)
                if j["status"] in TERMINAL:
                    done[i] = j
                    pending.discard(i)
            if pending:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(pending)} job(s) not finished after {timeout} s")
                time.sleep(0.1)
        return [done[i] for i in ids]

    def histogram(self, route: str) -> dict[float, float]:
        """Cumulative bucket counts of the frontend's own latency histogram
        (`http_request_duration_seconds`, handler time) for one route."""
        st, data = self.request("GET", "/metrics")
        out = {}
        if st != 200:
            return out
        pat = re.compile(r'^(?:[a-z]+_)?http_request_duration_seconds_bucket\{(.*)\} (\S+)$')
        for line in data.decode(errors="replace").splitlines():
            m = pat.match(line)
            if not m or f'route="{route}"' not in m.group(1):
                continue
            le = re.search(r'le="([^"]+)"', m.group(1)).group(1)
            out[float("inf") if le == "+Inf" else float(le)] = float(m.group(2))
        return out


class Webhook:
    """Receives the observer's scale decisions, with their arrival time."""

    def __init__(self):
        calls = self.calls = []
        lock = self.lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                at = time.monotonic()
                try:
                    data = json.loads(body)
                except ValueError:
                    data = {"raw": body.decode(errors="replace")}
                with lock:
                    calls.append((at, data))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/scale"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def since(self, t: float) -> list[tuple[float, dict]]:
        with self.lock:
            return [c for c in self.calls if c[0] >= t]

    def wait_for(self, t: float, pred, timeout: float) -> tuple[float, dict] | None:
        """The first call received at or after `t` whose body satisfies
        `pred`, waiting up to `timeout` seconds; None if none came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for c in self.since(t):
                if pred(c[1]):
                    return c
            time.sleep(0.01)
        return None

    def close(self):
        self.server.shutdown()
