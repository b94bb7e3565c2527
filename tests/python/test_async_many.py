"""asyncio and batch runs."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import winsandbox
from conftest import PID, WINE, alive, gone_soon, py
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
    code = f"import os, sys, time; open({str(pidfile)!r}, 'w').write(str({PID})); time.sleep(60)"

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
    assert gone_soon(pid)


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
        f"p = os.path.join(d, str({PID})); open(p, 'w').close()\n"
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


def native_threads() -> int:
    """This process's threads as the system counts them (not only Python's)."""
    if sys.platform == "win32":
        import ctypes
        from ctypes import wintypes

        class THREADENTRY32(ctypes.Structure):
            _fields_ = [
                ("dwSize", wintypes.DWORD),
                ("cntUsage", wintypes.DWORD),
                ("th32ThreadID", wintypes.DWORD),
                ("th32OwnerProcessID", wintypes.DWORD),
                ("tpBasePri", wintypes.LONG),
                ("tpDeltaPri", wintypes.LONG),
                ("dwFlags", wintypes.DWORD),
            ]

        k = ctypes.WinDLL("kernel32", use_last_error=True)
        k.CreateToolhelp32Snapshot.restype = ctypes.c_void_p
        snap = k.CreateToolhelp32Snapshot(4, 0)  # TH32CS_SNAPTHREAD
        assert snap and snap != ctypes.c_void_p(-1).value, ctypes.get_last_error()
        e = THREADENTRY32()
        e.dwSize = ctypes.sizeof(e)
        me, n = os.getpid(), 0
        ok = k.Thread32First(ctypes.c_void_p(snap), ctypes.byref(e))
        while ok:
            n += e.th32OwnerProcessID == me
            ok = k.Thread32Next(ctypes.c_void_p(snap), ctypes.byref(e))
        k.CloseHandle(ctypes.c_void_p(snap))
        return n
    return len(os.listdir("/proc/self/task"))


def test_many_concurrent_runs_wait_on_no_thread_of_their_own(tmp_path: Path) -> None:
    """Every run_async waits on the engine's one driver thread: a thousand
    sleeping runs (with a sampled memory limit) add no thread, and each ends
    with its right verdict. Under Wine fewer: each start costs ~0.1 s there."""
    n = 1000 if winsandbox.BACKEND == "posix" else (40 if WINE else 200)
    gate = tmp_path / "gate"
    if winsandbox.BACKEND == "posix":
        # Waits without forking: a `sleep` child every 0.5 s in each of a
        # thousand shells loaded both cores, and the starts took a minute.
        # A FIFO opened read-write never blocks the open, and nobody writes.
        idle = tmp_path / "idle"
        os.mkfifo(idle)
        wait = f"exec 3<>'{idle}'; while [ ! -e '{gate}' ]; do read -t 0.5 -u 3 _; done; exit 0"
        sleeper = ["bash", "-c", wait]
    else:
        sleeper = py(f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.2)")
    limits = Limits(memory="256MiB", wall_time=120)
    winsandbox.run(py("pass"))  # the monitor and the driver exist from here on
    before = native_threads()

    async def main() -> tuple[int, list[winsandbox.Outcome[bytes]]]:
        tasks = [asyncio.create_task(winsandbox.run_async(sleeper, limits=limits)) for _ in range(n)]
        await asyncio.sleep(0.1)  # every task has started its run
        during = native_threads()
        gate.touch()
        return during, list(await asyncio.gather(*tasks))

    during, outs = asyncio.run(main())
    assert len(outs) == n
    assert {o.verdict for o in outs} == {Verdict.OK}, [o for o in outs if o.verdict is not Verdict.OK][:3]
    assert during <= before, f"{n} runs in flight: threads {before} -> {during}"


def test_run_many_waits_on_no_thread_of_its_own() -> None:
    before = native_threads()
    seen: list[int] = []
    for o in winsandbox.run_many([py("import time; time.sleep(0.3)") for _ in range(8)], concurrency=8):
        assert o.verdict is Verdict.OK
        seen.append(native_threads())
    assert max(seen) <= max(before, 1) + 2, (before, seen)  # at most the monitor and the driver, once


def test_run_many_ctrl_c_kills_what_runs(tmp_path: Path) -> None:
    import signal

    pidfile = tmp_path / "pid"
    # Appended, one line each: with 'w' the second program to start truncated
    # what the first wrote, and a Ctrl-C between its open and its write left
    # the file empty (seen once under Wine, where starts are slow).
    code = f"import os, sys, time; open({str(pidfile)!r}, 'a').write(str({PID}) + chr(10)); time.sleep(60)"

    def interrupt() -> None:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        import _thread

        _thread.interrupt_main()

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    t0 = time.monotonic()
    try:
        threading.Thread(target=interrupt, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            list(winsandbox.run_many([py(code)] * 2, concurrency=2))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - t0 < 40
    pids = [int(p) for p in pidfile.read_text().split()]
    assert pids
    assert all(gone_soon(p) for p in pids)


def test_a_run_outlives_the_thread_that_started_it() -> None:
    """The driver carries a run, so it may outlive the thread that started
    it (PR_SET_PDEATHSIG follows the starting thread on Linux: runs are
    started from one lasting thread when not on the main thread)."""
    from winsandbox._run import _start

    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(_start(py("import time; time.sleep(1); print('done')"))))
    t.start()
    t.join()
    time.sleep(0.3)  # the starting thread is gone
    r = box[0]
    try:
        o = r.wait(30)
    finally:
        r.close()
    assert o is not None and (o.verdict, o.stdout.strip()) == (Verdict.OK, b"done"), o
