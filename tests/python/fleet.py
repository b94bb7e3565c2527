"""A real Redis and real Celery worker processes, for the fleet tests and the
fleet bench. ``WINSANDBOX_TEST_REDIS_URL`` names a Redis that the test script
started (``.ci/run``); without it, a ``redis-server`` on PATH is started on a
free port of 127.0.0.1 for the session and stopped after."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Optional

URL_ENV = "WINSANDBOX_TEST_REDIS_URL"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server() -> Iterator[Optional[str]]:
    """The URL of a Redis to use (database 0 of it), or None when there is none."""
    url = os.environ.get(URL_ENV)
    if url:
        yield url.rstrip("/")
        return
    exe = shutil.which("redis-server")
    if exe is None or sys.platform == "win32":
        yield None
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="wsb-redis-") as d:
        p = subprocess.Popen(
            [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", "--dir", d],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                if _answers("127.0.0.1", port):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{port}")
            yield f"redis://127.0.0.1:{port}"
        finally:
            p.terminate()
            p.wait(10)


def flush(url: str) -> None:
    """Empties the Redis database at ``url`` (what an earlier test left)."""
    import redis

    redis.Redis.from_url(url).flushdb()


def broker_state(url: str) -> dict[str, int]:
    """What Redis holds for kombu: queued, unacknowledged, and the restore lock's TTL."""
    import redis

    r = redis.Redis.from_url(url)
    return {"queued": int(r.llen("celery")), "unacked": int(r.hlen("unacked")),
            "unacked_index": int(r.zcard("unacked_index")), "mutex_ttl": int(r.ttl("unacked_mutex"))}  # fmt: skip


class Workers:
    """Celery worker processes of `winsandbox.celery`, each with its log."""

    def __init__(self, url: str, logs: Path, env: Optional[Mapping[str, str]] = None) -> None:
        self.url = url
        self.logs = logs
        self.env = dict(os.environ, WINSANDBOX_BROKER_URL=url, **(env or {}))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._files: list[IO[bytes]] = []

    def start(self, name: str, concurrency: int) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # closed in stop()
        self._files.append(log)
        argv = [sys.executable, "-m", "celery", "-A", "winsandbox.celery", "worker", "-P", "threads",
                "-c", str(concurrency), "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
                "-l", "warning"]  # fmt: skip
        p = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs[name] = p
        return p

    def wait_ready(self, app: Any, timeout: float) -> None:
        """Until every started worker answers a ping."""
        host = socket.gethostname()
        want = {f"{n}@{host}" for n, p in self.procs.items() if p.poll() is None}
        end = time.monotonic() + timeout
        seen: set[str] = set()
        while time.monotonic() < end:
            for r in app.control.ping(timeout=1.0) or []:
                seen.update(r)
            if want <= seen:
                return
            for n, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"worker {n} exited with {p.returncode}:\n{self.log(n)}")
        raise RuntimeError(f"workers {sorted(want - seen)} did not answer within {timeout} s")

    def log(self, name: str) -> str:
        try:
            return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        for f in self._files:
            f.close()


def client_app(url: str, visibility_timeout: float) -> Any:
    """A client Celery app for ``url``, configured as the workers are."""
    from celery import Celery

    import winsandbox.celery as wc

    a = Celery("winsandbox-test", broker=url, backend=url)
    wc.configure(a, visibility_timeout=visibility_timeout)
    wc.register(a)
    return a
