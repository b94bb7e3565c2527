"""Benchmarks of the Python API, reported as ratios against a baseline
measured in the same run, interleaved. `--benchmark-disable` (CI) runs each
once as a smoke test; `scripts/bench.sh` runs them for real and prints the
table collected here."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable

import pytest

ROWS: list[tuple[str, str, float, str]] = []


def noop() -> list[str]:
    """argv of a no-op program: the cheapest real process on this system."""
    env = os.environ.get("WINSANDBOX_NOOP")
    if env:
        return env.split()
    true = shutil.which("true")
    if true and os.name != "nt":
        return [true]
    return [sys.executable, "-S", "-c", "pass"]


def quick(config: pytest.Config) -> bool:
    return bool(config.getoption("benchmark_disable", False))


def interleaved(base: Callable[[], object], subject: Callable[[], object], n: int) -> tuple[float, float]:
    """Median seconds per call of each, alternating calls."""
    base()
    subject()
    b: list[float] = []
    s: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        base()
        b.append(time.perf_counter() - t)
        t = time.perf_counter()
        subject()
        s.append(time.perf_counter() - t)
    return statistics.median(b), statistics.median(s)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    w = terminalreporter
    w.write_line("")
    w.write_line("| measure | baseline | ratio | detail |")
    w.write_line("|---|---|---|---|")
    for measure, baseline, ratio, detail in ROWS:
        shown = "-" if ratio != ratio else f"{ratio:.3f}"  # NaN: a row without a baseline
        w.write_line(f"| {measure} | {baseline} | {shown} | {detail} |")
