"""Python-side cost of winsandbox, against `subprocess.run` and against the
native call it wraps."""

from __future__ import annotations

import concurrent.futures
import subprocess
import time

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

import winsandbox
from conftest import ROWS, interleaved, noop, quick
from winsandbox import _winsandbox


def _native(argv: list[str]) -> None:
    with _winsandbox.start(argv) as r:
        d = r.wait()
        assert d is not None and d["verdict"] == "OK", d


def _api(argv: list[str]) -> None:
    o = winsandbox.run(argv)
    assert o.verdict is winsandbox.Verdict.OK, o


def _subprocess(argv: list[str]) -> None:
    p = subprocess.run(argv, capture_output=True, check=False)
    assert p.returncode == 0


def test_python_layer_cost(benchmark: BenchmarkFixture, request: pytest.FixtureRequest) -> None:
    argv = noop()
    n = 3 if quick(request.config) else 300
    native, api = interleaved(lambda: _native(argv), lambda: _api(argv), n)
    ROWS.append(
        (
            "Python layer: winsandbox.run vs the native call",
            "_winsandbox.start().wait()",
            api / native,
            f"{(api - native) * 1e6:+.0f} us per run ({n} runs interleaved, medians)",
        )
    )
    benchmark(_api, argv)


def test_overhead_vs_subprocess(benchmark: BenchmarkFixture, request: pytest.FixtureRequest) -> None:
    argv = noop()
    n = 3 if quick(request.config) else 300
    sub, api = interleaved(lambda: _subprocess(argv), lambda: _api(argv), n)
    ROWS.append(
        (
            "per-run: winsandbox.run vs subprocess.run (no-op)",
            "subprocess.run",
            api / sub,
            f"{api * 1e3:.3f} ms vs {sub * 1e3:.3f} ms ({n} runs interleaved, medians)",
        )
    )
    benchmark(_subprocess, argv)


@pytest.mark.parametrize("concurrency", [1, 2, 8, 32])
def test_throughput_run_many(benchmark: BenchmarkFixture, request: pytest.FixtureRequest, concurrency: int) -> None:
    argv = noop()
    total = 4 if quick(request.config) else 400

    def bare() -> float:
        t = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda _: _subprocess(argv), range(total)))
        return total / (time.perf_counter() - t)

    def many() -> float:
        t = time.perf_counter()
        outs = list(winsandbox.run_many((argv for _ in range(total)), concurrency=concurrency))
        assert all(o.ok for o in outs)
        return total / (time.perf_counter() - t)

    b1, m1, b2, m2 = bare(), many(), bare(), many()
    b, m = (b1 + b2) / 2, (m1 + m2) / 2
    ROWS.append(
        (
            f"throughput: run_many, concurrency {concurrency}",
            "subprocess.run in a thread pool",
            m / b,
            f"{m:.0f} vs {b:.0f} runs/s ({total} runs x2, interleaved)",
        )
    )
    benchmark(lambda: None)
