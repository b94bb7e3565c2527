"""asyncio and batch runs."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import winsandbox
from conftest import alive, py
from winsandbox import Job, Limits, Verdict


def test_run_async_returns_the_outcome() -> None:
    async def main() -> list[winsandbox.Outcome[bytes]]:
        return list(await asyncio.gather(*(winsandbox.run_async(py(f"print({i})")) for i in range(5))))

    outs = asyncio.run(main())
    assert [o.stdout.strip() for o in outs] == [str(i).encode() for i in range(5)]


def test_run_async_does_not_block_the_loop() -> None:
    async def main() -> int:
        ticks = 0
        task = asyncio.create_task(winsandbox.run_async(py("import time; time.sleep(1.5)")))
        while not task.done():
            ticks += 1
            await asyncio.sleep(0.05)
        assert (await task).verdict is Verdict.OK
        return ticks

    assert asyncio.run(main()) >= 10


def test_cancel_kills_the_job(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    code = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(60)"

    async def main() -> None:
        task = asyncio.create_task(winsandbox.run_async(py(code)))
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    t = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - t < 40
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_run_many_keeps_order_and_survives_failures() -> None:
    jobs: list[Job | list[str]] = [Job(py(f"import sys; print({i}); sys.exit({i % 3})")) for i in range(12)]
    jobs.insert(5, ["/no/such/program"])
    outs = list(winsandbox.run_many(jobs, concurrency=4))
    assert len(outs) == 13
    assert outs[5].verdict is Verdict.SE and outs[5].error and "FileNotFoundError" in outs[5].error
    rest = outs[:5] + outs[6:]
    assert [int(o.stdout) for o in rest] == list(range(12))
    assert [o.verdict for o in rest] == [Verdict.OK if i % 3 == 0 else Verdict.RE for i in range(12)]


def test_run_many_bounds_concurrency(tmp_path: Path) -> None:
    code = (
        "import os, sys, time\n"
        "d = sys.argv[1]\n"
        "p = os.path.join(d, str(os.getpid())); open(p, 'w').close()\n"
        "time.sleep(0.5)\n"
        "print(len(os.listdir(d)))\n"
        "os.remove(p)\n"
    )
    outs = list(winsandbox.run_many(([*py(code), str(tmp_path)] for _ in range(8)), concurrency=2, text=True))
    assert all(o.verdict is Verdict.OK for o in outs), outs
    assert max(int(o.stdout) for o in outs) <= 2


def test_run_many_default_limits_and_bad_concurrency() -> None:
    outs = list(winsandbox.run_many([py("import time; time.sleep(30)")], limits=Limits(wall_time=0.5)))
    assert outs[0].verdict is Verdict.WLE
    with pytest.raises(ValueError, match="concurrency"):
        list(winsandbox.run_many([], concurrency=0))


def test_kill_and_close_reach_a_wait_on_another_thread() -> None:
    """Waits off the main thread are not sliced (no wake-ups): a kill or a
    close from another thread still ends them at once."""
    from winsandbox._run import _start

    for how in ("kill", "close"):
        r = _start(py("import time; time.sleep(60)"))
        got: list[Any] = []
        t = threading.Thread(target=lambda r=r, got=got: got.append(r.wait()))
        t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        r.kill() if how == "kill" else r.close()
        t.join(15)
        assert not t.is_alive(), how
        assert time.monotonic() - t0 < 10, how
        assert got and got[0].verdict is Verdict.SE and got[0].error and "killed" in got[0].error, (how, got)
        r.close()
        assert not alive(r.pid), how
