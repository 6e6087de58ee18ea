"""A real S3-compatible server (moto_server) on 127.0.0.1 and a fault-injecting proxy.

The proxy forwards every request to the server and logs it; rules chosen by a test make
it answer with an HTTP error, delay, or drop the connection for matching requests.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ACCESS_KEY = "testing-key"
SECRET_KEY = "TOPSECRET-do-not-leak-9f3e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """``moto_server`` as a subprocess on a free loopback port."""

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("moto_server exited at start-up")
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto_server did not start within 30 s")

    def client(self, endpoint=None):
        import boto3

        return boto3.client("s3", endpoint_url=endpoint or self.url, region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def upload(self, bucket: str, local: Path, prefix: str) -> None:
        from concurrent.futures import ThreadPoolExecutor

        c = self.client()
        files = [f for f in sorted(Path(local).rglob("*")) if f.is_file()]

        def put(f):
            c.put_object(Bucket=bucket, Key=f"{prefix}/{f.relative_to(local).as_posix()}",
                         Body=f.read_bytes())

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, files))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Rule:
    """Fault for requests whose ``METHOD path?query`` matches ``pattern``.

    ``action`` is an HTTP status (int), ``"drop"`` (close without answering),
    ``"delay"`` (sleep ``seconds`` before forwarding) or ``"stall"`` (hold the
    request until :meth:`release`, then forward it, or answer with the HTTP status
    ``then``); applied ``times`` times (``None`` = always).  A stall rule set to
    release stops matching, so later requests pass.  :meth:`wait_hits` lets a test
    wait for requests to arrive (an ordering point, not a timing assumption)."""

    def __init__(self, pattern: str, action, times=None, seconds: float = 0.0, then=None):
        self.pattern = re.compile(pattern)
        self.action = action
        self.times = times
        self.seconds = seconds
        self.then = then
        self.hits = 0
        self.matched: list[str] = []  # the request lines this rule acted on
        self.released = threading.Event()
        self._arrived = threading.Condition()

    def release(self) -> None:
        self.released.set()

    def wait_hits(self, n: int, timeout: float = 60.0) -> bool:
        """Block until ``n`` requests matched (``timeout`` only guards against hangs)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self.hits >= n, timeout)

    def _arrive(self) -> None:
        with self._arrived:
            self._arrived.notify_all()

    def take(self, line: str) -> bool:
        if not self.pattern.search(line):
            return False
        if self.times is not None and self.hits >= self.times:
            return False
        if self.action == "stall" and self.released.is_set():
            return False
        self.hits += 1
        self.matched.append(line)
        return True


class FaultProxy:
    """Loopback HTTP proxy in front of the S3 server; logs ``METHOD path?query``."""

    def __init__(self, upstream_port: int):
        self.log: list[str] = []
        self.ranges: list = []  # (line, Range header or None), in the order of ``log``
        self.rules: list[Rule] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                line = f"{self.command} {self.path}"
                with proxy._lock:
                    proxy.log.append(line)
                    proxy.ranges.append((line, self.headers.get("Range")))
                    rule = next((r for r in proxy.rules if r.take(line)), None)
                if rule is not None:
                    rule._arrive()
                    if rule.action == "stall":
                        rule.released.wait()
                        if rule.then is not None:
                            rule = Rule(rule.pattern.pattern, rule.then)
                    if rule.action == "stall":
                        pass  # forward it
                    elif rule.action == "drop":
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    elif rule.action == "delay":
                        time.sleep(rule.seconds)
                    else:
                        msg = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
                        if rule.action == 503:
                            msg = b"<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                        elif rule.action == 403:  # what S3 says without the permission
                            msg = b"<Error><Code>AccessDenied</Code><Message>injected</Message></Error>"
                        self.send_response(int(rule.action))
                        self.send_header("Content-Type", "application/xml")
                        self.send_header("Content-Length", str(len(msg)))
                        self.end_headers()
                        if self.command != "HEAD":  # a HEAD answer has no body
                            self.wfile.write(msg)
                        return
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = f"127.0.0.1:{upstream_port}"
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                # a HEAD answer carries the object's length without its bytes
                length = resp.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self):
        with self._lock:
            self.log.clear()
            self.ranges.clear()
            self.rules.clear()

    def requests(self, method=None, contains=None) -> list[str]:
        with self._lock:
            return [r for r in self.log if (method is None or r.startswith(method + " "))
                    and (contains is None or contains in r)]

    def stop(self):
        for r in list(self.rules):  # no handler thread left holding a request
            r.released.set()
        self.server.shutdown()
        self.server.server_close()
