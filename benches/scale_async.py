"""Run by the bench in a fresh interpreter: N sleeping `run_async` runs at
once; prints one JSON line with the supervisor's threads and CPU while they
sleep. `python scale_async.py N wall|memory SETTLE WINDOW`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import winsandbox
from winsandbox import Limits


def native_threads() -> int:
    """The process's threads as the system counts them."""
    if sys.platform != "win32":
        return len(os.listdir("/proc/self/task"))
    import ctypes
    from ctypes import wintypes

    class Entry(ctypes.Structure):
        _fields_ = [(n, wintypes.DWORD) for n in ("size", "usage", "tid", "owner", "base", "delta", "flags")]

    k = ctypes.WinDLL("kernel32")
    k.CreateToolhelp32Snapshot.restype = ctypes.c_void_p
    snap = ctypes.c_void_p(k.CreateToolhelp32Snapshot(4, 0))
    e = Entry()
    e.size = ctypes.sizeof(e)
    n, ok = 0, k.Thread32First(snap, ctypes.byref(e))
    while ok:
        n += e.owner == os.getpid()
        ok = k.Thread32Next(snap, ctypes.byref(e))
    k.CloseHandle(snap)
    return n


def cpu_seconds() -> float:
    """The process's CPU time. Under Wine, Windows' figures read 0: the Wine
    process's own, read from Linux through Wine's Z: drive."""
    wine_stat = r"Z:\proc\self\stat"
    if sys.platform == "win32" and os.path.exists(wine_stat):
        with open(wine_stat) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100  # utime, stime in USER_HZ
    t = os.times()
    return t.user + t.system


def sleeper(seconds: float) -> list[str]:
    if winsandbox.BACKEND == "posix":
        return ["sleep", str(seconds)]
    return [sys.executable, "-S", "-c", f"import time; time.sleep({seconds})"]


async def main(n: int, kind: str, settle: float, window: float) -> dict[str, object]:
    limits = Limits(wall_time=600) if kind == "wall" else Limits(wall_time=600, memory="256MiB")
    before = native_threads()
    t0 = time.monotonic()
    tasks = [asyncio.create_task(winsandbox.run_async(sleeper(settle + window + 600), limits=limits)) for _ in range(n)]
    await asyncio.sleep(0)  # every task has started its run
    started = time.monotonic() - t0
    await asyncio.sleep(settle)
    threads = native_threads()
    c0, w0 = cpu_seconds(), time.monotonic()
    await asyncio.sleep(window)
    cpu = (cpu_seconds() - c0) / (time.monotonic() - w0)
    for t in tasks:
        t.cancel()
    outs = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, asyncio.CancelledError) for o in outs), outs[:3]
    return {"n": n, "kind": kind, "threads_before": before, "threads": threads, "cpu": cpu, "start_s": started}


if __name__ == "__main__":
    n, kind, settle, window = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(asyncio.run(main(n, kind, settle, window))))
