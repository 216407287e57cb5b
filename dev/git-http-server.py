#!/usr/bin/env python3
"""Serves git repositories over smart HTTP for local tests and development.

libgit2 (and so the worker) speaks only the smart HTTP protocol, which a
plain static file server cannot provide. This wraps `git http-backend` as a
CGI program behind Python's threaded HTTP server.

    dev/git-http-server.py --root DIR [--port 0] [--auth USER:PASSWORD]
                           [--auth-prefix /private/]

Repositories are served from DIR (e.g. DIR/public/app.git is
http://127.0.0.1:PORT/public/app.git). With --auth, every path that starts
with --auth-prefix needs HTTP basic auth with those credentials. The first
line on stdout is `listening on PORT`, so callers may pass --port 0.
"""

import argparse
import base64
import hmac
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


def git_http_backend() -> str:
    exec_path = subprocess.run(
        ["git", "--exec-path"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return os.path.join(exec_path, "git-http-backend")


class GitHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    root = "."
    backend = "git-http-backend"
    auth = None  # (user, password) or None
    auth_prefix = "/private/"

    def log_message(self, fmt, *args):  # keep test output quiet
        if os.environ.get("GIT_HTTP_SERVER_VERBOSE"):
            super().log_message(fmt, *args)

    def do_GET(self):
        self.serve()

    def do_POST(self):
        self.serve()

    def authorised(self, path: str) -> bool:
        if self.auth is None or not path.startswith(self.auth_prefix):
            return True
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            given = base64.b64decode(header[6:]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        expected = f"{self.auth[0]}:{self.auth[1]}"
        return hmac.compare_digest(given.encode(), expected.encode())

    def reply(self, status: int, text: str, extra=()):
        body = text.encode()
        self.send_response(status)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def serve(self):
        parts = urlsplit(self.path)
        if ".." in parts.path.split("/"):
            self.reply(400, "bad path\n")
            return
        if not self.authorised(parts.path):
            self.reply(401, "authentication required\n",
                       [("WWW-Authenticate", 'Basic realm="git"')])
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
        }
        if self.auth is not None and parts.path.startswith(self.auth_prefix):
            env["REMOTE_USER"] = self.auth[0]
        if self.headers.get("Git-Protocol"):
            env["HTTP_GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        proc = subprocess.run([self.backend], input=body, env=env, capture_output=True)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--auth", help="USER:PASSWORD for paths under --auth-prefix")
    parser.add_argument("--auth-prefix", default="/private/")
    args = parser.parse_args()

    GitHandler.root = os.path.abspath(args.root)
    GitHandler.backend = git_http_backend()
    GitHandler.auth_prefix = args.auth_prefix
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep:
            parser.error("--auth must be USER:PASSWORD")
        GitHandler.auth = (user, password)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), GitHandler)
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
