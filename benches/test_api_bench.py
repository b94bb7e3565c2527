"""Python-side cost of winsandbox, against `subprocess.run` and against the
native call it wraps."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, Optional

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import winsandbox
from conftest import ROWS, interleaved, noop, quick
from winsandbox import _winsandbox

WINE = _winsandbox.wine_version() if winsandbox.BACKEND == "windows" else None


def _throughput_row(measure: str, argv: list[str], total: int, concurrency: int, subject: Callable[[], None]) -> None:
    """A row: runs/s of ``subject`` (which runs ``total`` runs of ``argv``)
    against `subprocess.run` in a pool of ``concurrency`` threads, alternated twice."""

    def bare() -> float:
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda _: _subprocess(argv), range(total)))
        return total / (time.perf_counter() - t)

    def api() -> float:
        t = time.perf_counter()
        subject()
        return total / (time.perf_counter() - t)

    b1, a1, b2, a2 = bare(), api(), bare(), api()
    b, a = (b1 + b2) / 2, (a1 + a2) / 2
    ROWS.append((measure, "subprocess.run in a thread pool", a / b,
                 f"{a:.0f} vs {b:.0f} runs/s ({total} runs x2, interleaved)"))  # fmt: skip


def _api_run(argv: list[str]) -> None:
    o = winsandbox.run(argv)
    assert o.verdict is winsandbox.Verdict.OK, o


def _subprocess(argv: list[str]) -> None:
    p = subprocess.run(argv, capture_output=True, check=False)
    assert p.returncode == 0


class _TimedRun:
    """A native `Run` whose calls add their time to `spent`."""

    def __init__(self, run: _winsandbox.Run, spent: list[float]) -> None:
        self._run, self._spent = run, spent

    def wait(self, timeout: Optional[float] = None) -> Optional[winsandbox.Outcome[bytes]]:
        t = time.perf_counter()
        try:
            return self._run.wait(timeout)
        finally:
            self._spent[0] += time.perf_counter() - t

    def close(self) -> None:
        t = time.perf_counter()
        try:
            self._run.close()
        finally:
            self._spent[0] += time.perf_counter() - t


class _TimedNative:
    """The native module, with `start` and the `Run` it returns timed: every
    call still goes to the real module and starts a real process."""

    def __init__(self) -> None:
        self.spent = [0.0]

    def __getattr__(self, name: str) -> Any:
        return getattr(_winsandbox, name)

    def start(self, *args: Any, **kwargs: Any) -> _TimedRun:
        t = time.perf_counter()
        try:
            run = _winsandbox.start(*args, **kwargs)
        finally:
            self.spent[0] += time.perf_counter() - t
        return _TimedRun(run, self.spent)


def python_side(argv: list[str], n: int, monkeypatch: pytest.MonkeyPatch) -> tuple[float, float]:
    """Median seconds per `winsandbox.run`: in the native calls it makes, and
    in Python around them (everything else, the timing wrappers included, so
    the Python figure errs high)."""
    timed = _TimedNative()
    native: list[float] = []
    python: list[float] = []
    monkeypatch.setattr(winsandbox._run, "_winsandbox", timed)
    for i in range(n + 1):
        timed.spent[0] = 0.0
        t = time.perf_counter()
        _api_run(argv)
        total = time.perf_counter() - t
        if i:  # the first run warms up
            native.append(timed.spent[0])
            python.append(total - timed.spent[0])
    monkeypatch.undo()
    return statistics.median(native), statistics.median(python)


def test_python_layer_cost(
    benchmark: BenchmarkFixture, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = noop()
    n = 3 if quick(request.config) else 300
    native, python = python_side(argv, n, monkeypatch)
    ROWS.append(
        (
            "Python layer: winsandbox.run vs the native calls it makes",
            "time in _winsandbox.start/wait/close",
            (native + python) / native,
            f"{python * 1e6:+.0f} us per run in Python ({n} runs, medians, measured inside each run)",
        )
    )
    benchmark(_api_run, argv)


def test_overhead_vs_subprocess(benchmark: BenchmarkFixture, request: pytest.FixtureRequest) -> None:
    argv = noop()
    n = 3 if quick(request.config) else 300
    sub, api = interleaved(lambda: _subprocess(argv), lambda: _api_run(argv), n)
    ROWS.append(
        (
            "per-run: winsandbox.run vs subprocess.run (no-op)",
            "subprocess.run",
            api / sub,
            f"{api * 1e3:.3f} ms vs {sub * 1e3:.3f} ms ({n} runs interleaved, medians)",
        )
    )
    benchmark(_subprocess, argv)


@pytest.mark.parametrize("level", ["strict", "restricted"])
def test_isolation_cost(benchmark: BenchmarkFixture, request: pytest.FixtureRequest, level: str) -> None:
    """The per-run cost of an isolation level: the same no-op run at level
    ``none`` and at ``level``, interleaved (Linux: the namespaces, the view
    of the files, Landlock; where a level is refused, the refusal)."""
    argv = noop()
    n = 3 if quick(request.config) else 300

    def isolated() -> None:
        o = winsandbox.run(argv, isolation=level)  # type: ignore[call-overload]
        assert o.verdict is (winsandbox.Verdict.SE if WINE else winsandbox.Verdict.OK), o

    none, iso = interleaved(lambda: _api_run(argv), isolated, n)
    what = "refused (SE)" if WINE else "run"
    ROWS.append(
        (
            f"per-run: isolation={level!r} vs 'none' (no-op, {what})",
            "winsandbox.run, isolation='none'",
            iso / none,
            f"{iso * 1e3:.3f} ms vs {none * 1e3:.3f} ms ({n} runs interleaved, medians)",
        )
    )
    benchmark(isolated)


@pytest.mark.parametrize("concurrency", [1, 2, 8, 32])
def test_throughput_run_many(benchmark: BenchmarkFixture, request: pytest.FixtureRequest, concurrency: int) -> None:
    argv = noop()
    total = 4 if quick(request.config) else 400

    def many() -> None:
        outs = list(winsandbox.run_many((argv for _ in range(total)), concurrency=concurrency))
        assert all(o.ok for o in outs)

    _throughput_row(f"throughput: run_many, concurrency {concurrency}", argv, total, concurrency, many)
    benchmark(lambda: None)


def test_throughput_fleet_vs_local(benchmark: BenchmarkFixture, request: pytest.FixtureRequest, tmp_path: Any) -> None:
    """Two Celery workers (threads pool, 2 each) on a real Redis against
    local `run_many` at the same total concurrency (4)."""
    pytest.importorskip("celery", reason="winsandbox[celery] is not installed")
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))
    fleet: Any = importlib.import_module("fleet")  # the tests' helpers: a real Redis, real workers

    import winsandbox.celery as wc

    argv = noop()
    total = 8 if quick(request.config) else 400
    with fleet.redis_server() as url:
        if url is None:
            pytest.skip("no Redis (redis-server) for the fleet")
        fleet.flush(url)
        workers = fleet.Workers(url, tmp_path)
        try:
            workers.start("b0", 2)
            workers.start("b1", 2)
            app = fleet.client_app(url, 60)
            workers.wait_ready(app, 240)

            def local() -> float:
                t = time.perf_counter()
                assert all(o.ok for o in winsandbox.run_many((argv for _ in range(total)), concurrency=4))
                return total / (time.perf_counter() - t)

            def remote() -> float:
                t = time.perf_counter()
                assert all(o.ok for o in wc.run_many((argv for _ in range(total)), app=app, timeout=600))
                return total / (time.perf_counter() - t)

            remote()  # warm: connections, imports
            b1, f1, b2, f2 = local(), remote(), local(), remote()
        finally:
            workers.stop()
            fleet.flush(url)
    b, f = (b1 + b2) / 2, (f1 + f2) / 2
    ROWS.append(
        (
            "throughput: winsandbox.celery, 2 workers x 2 threads, one machine",
            "local run_many, concurrency 4",
            f / b,
            f"{f:.0f} vs {b:.0f} runs/s ({total} no-op runs x2, interleaved, Redis on 127.0.0.1)",
        )
    )
    benchmark(lambda: None)


def _scale_sizes(config: pytest.Config) -> list[int]:
    if quick(config):
        return [10]
    # Under Wine each sleeper is a Windows Python (about 15 MB, 0.15 s to start).
    return [10, 100] if WINE else [10, 100, 1000]


@pytest.mark.parametrize("kind", ["wall", "memory"])
def test_scale_concurrent_run_async(benchmark: BenchmarkFixture, request: pytest.FixtureRequest, kind: str) -> None:
    """Sleeping `run_async` runs at once, in a fresh interpreter: its threads
    and its CPU once they have settled (the limit `memory` is sampled)."""
    settle, window = (0.5, 0.5) if quick(request.config) else (4.0, 5.0)
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scale_async.py")
    for n in _scale_sizes(request.config):
        out = subprocess.run(
            [sys.executable, script, str(n), kind, str(settle), str(window)],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        assert out.returncode == 0, out.stderr
        r = json.loads(out.stdout)
        ROWS.append(
            (
                f"scale: {n} sleeping run_async runs ({'memory limit: sampled' if kind == 'memory' else 'wall limit'})",
                "-",
                float("nan"),
                f"threads {r['threads_before']} -> {r['threads']}, supervisor CPU while they sleep "
                f"{100 * r['cpu']:.2f} % of a core ({window:.0f} s, after {settle:.0f} s; all started in {r['start_s']:.1f} s)",
            )
        )
    benchmark(lambda: None)


def test_throughput_run_async(benchmark: BenchmarkFixture, request: pytest.FixtureRequest) -> None:
    """`run_async` at concurrency 32 (a semaphore) against `subprocess.run`
    in a pool of 32 threads."""
    argv = noop()
    total = 4 if quick(request.config) else 400
    concurrency = 32

    async def many() -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> winsandbox.Outcome[bytes]:
            async with sem:
                return await winsandbox.run_async(argv)

        outs = await asyncio.gather(*(one() for _ in range(total)))
        assert all(o.ok for o in outs)

    _throughput_row(f"throughput: run_async, concurrency {concurrency}", argv, total, concurrency,
                    lambda: asyncio.run(many()))  # fmt: skip
    benchmark(lambda: None)
