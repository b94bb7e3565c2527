"""A fleet on Celery with a real Redis: real worker processes judging real
programs (`winsandbox.celery`). Linux: two workers, 500 misbehaving jobs, one
worker SIGKILLed in the middle. Windows: a worker in this Windows Python
judging Windows programs."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

import winsandbox
from conftest import PY, alive, py
from winsandbox import Job, Limits, Outcome, Verdict

pytest.importorskip("celery", reason="winsandbox[celery] is not installed")
import fleet

import winsandbox.celery as wc

VISIBILITY = 6.0  # seconds before a dead worker's jobs go to another


def select_works() -> bool:
    """Whether select() works on sockets here. measured: in the Windows
    CPython of ../shared/wincpython under Wine 8 it fails on every socket
    (ValueError "filedescriptor out of range", or WinError 10022) (a mingw C program calling Wine's select() on the same
    socket works), so a socket connect with a timeout fails with WinError
    10035 and redis-py, hence Celery, cannot reach a broker."""
    a, b = socket.socketpair()
    try:
        select.select([a], [b], [], 0)
        return True
    except (OSError, ValueError):  # WinError 10022, or "filedescriptor out of range"
        return False
    finally:
        a.close()
        b.close()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if not select_works():
        pytest.skip("select() fails on sockets in this Python (../shared/wincpython's build), so "
                    "no Redis client can connect; the worker runs in the windows-latest CI job")  # fmt: skip
    with fleet.redis_server() as url:
        if url is None:
            if os.environ.get(fleet.URL_ENV + "_REQUIRED"):
                pytest.fail(f"no Redis: {fleet.URL_ENV} unset and no redis-server on PATH")
            pytest.skip(f"no Redis: set {fleet.URL_ENV} or install redis-server")
        yield url


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[fleet.Workers]:
    fleet.flush(redis_url)
    w = fleet.Workers(redis_url, tmp_path, env={"WINSANDBOX_VISIBILITY_TIMEOUT": str(VISIBILITY)})
    try:
        yield w
    finally:
        w.stop()
        fleet.flush(redis_url)


def expected(i: int, shared_input: Path) -> tuple[Job, tuple[Verdict, Optional[str]], Any]:
    """Job ``i`` of a misbehaving batch: the job, its verdict and limit, and
    its stdout (None: not checked)."""
    k = i % 20
    if k in (0, 1, 2, 10, 11, 12):
        return Job(args=["sh", "-c", 'echo "job $0"', str(i)]), (Verdict.OK, None), f"job {i}\n".encode()
    if k == 3:
        return Job(args=["sh", "-c", "exit 3"]), (Verdict.RE, None), b""
    if k in (4, 14):
        return Job(args=["sleep", "10"], limits=Limits(wall_time=0.5)), (Verdict.WLE, "wall_time"), b""
    if k in (5, 15):  # a grandchild in the background
        job = Job(args=["sh", "-c", "sleep 30 & sleep 30"], limits=Limits(wall_time=0.5))
        return job, (Verdict.WLE, "wall_time"), b""
    if k in (6, 16):
        return Job(args=["yes"], limits=Limits(output_limit=4096)), (Verdict.OLE, "output_limit"), None
    if k in (7, 17):
        return Job(args=["sh", "-c", "kill -SEGV $$"]), (Verdict.RE, None), b""
    if k == 8:
        job = Job(args=[PY, "-c", "b = bytearray(512 << 20)"], limits=Limits(memory="64MiB"))
        return job, (Verdict.MLE, "memory"), b""
    if k == 9:
        job = Job(args=["sh", "-c", "while :; do :; done"], limits=Limits(cpu_time=0.2, wall_time=5))
        return job, (Verdict.TLE, "cpu_time"), b""
    if k in (13, 18):
        return Job(args=["cat"], input=f"inline {i}".encode()), (Verdict.OK, None), f"inline {i}".encode()
    return Job(args=["cat"], stdin=shared_input), (Verdict.OK, None), shared_input.read_bytes()


def children_of(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def in_cgroups_of(pid: int) -> list[int]:
    """Processes left in the job cgroups of supervisor ``pid``."""
    left = []
    for procs in Path("/sys/fs/cgroup").glob(f"**/winsandbox-{pid}-*/cgroup.procs"):
        try:
            left += [int(x) for x in procs.read_text().split()]
        except OSError:
            continue
    return sorted(set(left))


@pytest.mark.skipif(winsandbox.BACKEND != "posix", reason="the Linux fleet (the Windows one is below)")
@pytest.mark.timeout(600)
def test_two_workers_500_jobs_one_killed(workers: fleet.Workers, tmp_path: Path) -> None:
    shared = tmp_path / "input.txt"
    shared.write_bytes(b"a shared input file\n")
    batch = [expected(i, shared) for i in range(500)]
    workers.start("w0", 4)
    workers.start("w1", 4)
    app = fleet.client_app(workers.url, VISIBILITY)
    workers.wait_ready(app, 60)
    victim = workers.procs["w0"]
    killed_children: list[int] = []
    seen = 0
    for i, o in enumerate(wc.run_many([j for j, _, _ in batch], app=app, timeout=150)):
        job, want, out = batch[i]
        assert o.args == tuple(job.args), (i, o)
        if (o.verdict, o.limit) != want:
            state = fleet.broker_state(workers.url)
            pytest.fail(f"job {i}: {o}\nbroker: {state}\nw0: {workers.log('w0')}\nw1: {workers.log('w1')}")
        if out is not None:
            assert o.stdout == out, (i, o)
        if want == (Verdict.RE, None) and job.args[-1] == "exit 3":
            assert o.exit_code == 3
        if job.args[-1] == "kill -SEGV $$":
            assert o.status == "SIGSEGV", o
        assert o.worker is not None and o.worker.backend == "posix" and o.worker.platform == sys.platform
        assert o.worker.limits == (job.limits or Limits())
        seen += 1
        if seen == 100:
            # the middle of the batch: w0 is judging jobs; kill it as a crash would
            for _ in range(200):
                killed_children = children_of(victim.pid)
                if killed_children:
                    break
                time.sleep(0.01)
            assert killed_children, "w0 was running nothing"
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(10)
            # its sandboxed programs die with it (PDEATHSIG)
            end = time.monotonic() + 5
            while any(alive(p) for p in killed_children) and time.monotonic() < end:
                time.sleep(0.05)
            assert not [p for p in killed_children if alive(p)], "the dead worker's programs live on"
            # what they left (a grandchild in the background) is in the dead
            # worker's job cgroups: w1 empties them at its next job
    assert in_cgroups_of(os.getpid()) == []
    assert seen == 500
    end = time.monotonic() + 10
    while in_cgroups_of(victim.pid) and time.monotonic() < end:
        time.sleep(0.1)
    assert in_cgroups_of(victim.pid) == [], "processes of the dead worker's jobs are still running"
    assert not list(Path("/sys/fs/cgroup").glob(f"**/winsandbox-{victim.pid}-*")), "its cgroups are still there"


def windows_jobs() -> list[tuple[Job, Verdict, Optional[bytes]]]:
    return [
        (Job(args=py("print('judged')")), Verdict.OK, b"judged\r\n"),
        (Job(args=py("import sys; sys.exit(7)")), Verdict.RE, None),
        (Job(args=py("import time; time.sleep(30)"), limits=Limits(wall_time=2)), Verdict.WLE, None),
        (Job(args=py("print('x' * 100000)"), limits=Limits(output_limit=1000)), Verdict.OLE, None),
        (Job(args=py("import sys; print(sys.stdin.read())"), input=b"from the client"), Verdict.OK, None),
    ]


def check_windows(jobs: list[tuple[Job, Verdict, Optional[bytes]]], outs: list[winsandbox.Outcome[bytes]]) -> None:
    assert len(outs) == len(jobs)
    for (_, verdict, out), o in zip(jobs, outs):
        assert o.verdict is verdict, o
        if out is not None:
            assert o.stdout == out
        assert o.worker is not None and o.worker.backend == "windows" and o.worker.platform == "win32"
    assert outs[1].exit_code == 7
    assert outs[4].stdout.strip() == b"from the client"


@pytest.mark.skipif(winsandbox.BACKEND != "windows", reason="Windows programs on the Windows backend")
def test_the_task_judges_windows_programs() -> None:
    """What a Windows worker runs for each job, without the broker: the job
    from its dict, judged on the Windows backend, the outcome as a dict."""
    jobs = windows_jobs()
    outs = [winsandbox.Outcome.from_dict(json.loads(json.dumps(wc._judge(j.to_dict(), None)))) for j, _, _ in jobs]
    check_windows(jobs, outs)


@pytest.mark.skipif(winsandbox.BACKEND != "windows", reason="the Windows fleet (the Linux one is above)")
@pytest.mark.timeout(600)
def test_windows_worker_judges_windows_programs(workers: fleet.Workers) -> None:
    workers.start("win0", 2)
    app = fleet.client_app(workers.url, VISIBILITY)
    workers.wait_ready(app, 240)
    jobs = windows_jobs()
    outs = list(wc.run_many([j for j, _, _ in jobs], app=app, timeout=400))
    try:
        check_windows(jobs, outs)
    except AssertionError:
        print(workers.log("win0"))
        raise


def test_fleet_run_many_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="limits"):
        list(wc.run_many([["x"]], limits={"wall_time": 1}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        list(wc.run_many([["x"]], timeout=0))


def test_a_bad_job_dict_is_an_se_outcome() -> None:
    d = wc._judge({"args": ["x"], "limits": {"wall": 1}})
    assert d["verdict"] == "SE" and "wall" in d["error"] and d["worker"]["backend"] == winsandbox.BACKEND


def test_no_worker_within_the_timeout_is_se(workers: fleet.Workers) -> None:
    app = fleet.client_app(workers.url, VISIBILITY)
    t = time.monotonic()
    outs = list(wc.run_many([["true"], Job(args=["true"])], app=app, timeout=1.5))
    assert time.monotonic() - t < 10
    assert [o.verdict for o in outs] == [Verdict.SE, Verdict.SE]
    assert all(o.error and "no worker gave an outcome within 1.5 s" in o.error for o in outs), outs


@pytest.mark.skipif(winsandbox.BACKEND != "posix", reason="the Linux fleet")
def test_a_job_the_broker_lost_is_sent_again(workers: fleet.Workers) -> None:
    """Kombu's Redis transport loses a job whose worker is killed between
    taking it off the queue and recording it as unacknowledged (seen once in
    this suite, in the killed-worker test). The client then sends it again:
    made happen here by taking the message off the queue with no worker up."""
    import threading

    import redis

    app = fleet.client_app(workers.url, VISIBILITY)
    outs: list[Outcome[bytes]] = []
    t = threading.Thread(target=lambda: outs.extend(wc.run_many([["sh", "-c", "echo judged"]], app=app, timeout=90)))
    t.start()
    r = redis.Redis.from_url(workers.url)
    end = time.monotonic() + 20
    while r.llen("celery") == 0 and time.monotonic() < end:
        time.sleep(0.01)
    assert r.delete("celery") == 1  # the message, gone as a killed worker would lose it
    time.sleep(5)  # the client sees it held nowhere (twice, 2 s apart) and sends it again
    workers.start("w0", 1)
    t.join(90)
    assert not t.is_alive()
    assert [o.verdict for o in outs] == [Verdict.OK], outs
    assert outs[0].stdout == b"judged\n"
