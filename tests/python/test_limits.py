from __future__ import annotations

import math
import os
import time

import pytest

import winsandbox
from conftest import PY
from winsandbox import Limits


def test_sizes_and_times_parse() -> None:
    lim = Limits(memory="256MiB", job_memory="1.5G", cpu_time="1.5s", wall_time="200ms", output_limit=0)
    assert lim.memory == 256 << 20
    assert lim.job_memory == 3 << 29
    assert lim.cpu_time == 1.5
    assert lim.wall_time == pytest.approx(0.2)
    assert lim.output_limit == 0
    assert Limits(memory=4096, wall_time=2).memory == 4096


def test_frozen_and_hashable() -> None:
    lim = Limits(memory="1M")
    with pytest.raises(AttributeError):
        lim.memory = 5  # type: ignore[misc]
    assert lim == Limits(memory=1 << 20)
    assert hash(lim) == hash(Limits(memory=1 << 20))
    assert lim.replace(wall_time=3).wall_time == 3.0


@pytest.mark.parametrize(
    ("kwargs", "field", "exc"),
    [
        ({"memory": 0}, "memory", ValueError),
        ({"memory": -5}, "memory", ValueError),
        ({"memory": "12Q"}, "memory", ValueError),
        ({"memory": 1.5}, "memory", TypeError),
        ({"memory": True}, "memory", TypeError),
        ({"job_memory": "lots"}, "job_memory", ValueError),
        ({"cpu_time": 0}, "cpu_time", ValueError),
        ({"cpu_time": math.nan}, "cpu_time", ValueError),
        ({"wall_time": math.inf}, "wall_time", ValueError),
        ({"wall_time": "3 days"}, "wall_time", ValueError),
        ({"wall_time": [1]}, "wall_time", TypeError),
        ({"processes": 0}, "processes", ValueError),
        ({"processes": 2**40}, "processes", ValueError),
        ({"total_processes": "3"}, "total_processes", TypeError),
        ({"cpu_rate": 101}, "cpu_rate", ValueError),
        ({"affinity": 0}, "affinity", ValueError),
        ({"priority": "realtime"}, "priority", ValueError),
        ({"output_limit": -1}, "output_limit", ValueError),
        ({"ui_restrictions": 1}, "ui_restrictions", TypeError),
    ],
)
def test_bad_values_name_the_field(kwargs: dict[str, object], field: str, exc: type[Exception]) -> None:
    with pytest.raises(exc, match=field):
        Limits(**kwargs)  # type: ignore[arg-type]


def test_unknown_field_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Limits(memroy=5)  # type: ignore[call-arg]


def test_limits_hold_in_a_forked_child() -> None:
    # A multiprocessing pool with the fork start method: the child has none of
    # the parent's threads, the monitor included; it must start its own.
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this system")
    winsandbox.run([PY, "-c", "pass"], limits=Limits(wall_time=5))  # the parent's monitor exists
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        code = 1
        try:
            t = time.monotonic()
            o = winsandbox.run([PY, "-c", "import time; time.sleep(6)"], limits=Limits(wall_time=0.5))
            os.write(w, f"{o.verdict.value} {time.monotonic() - t:.2f}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    got = b""
    while chunk := os.read(r, 100):
        got += chunk
    os.waitpid(pid, 0)
    verdict, secs = got.decode().split()
    assert verdict == "WLE" and float(secs) < 3, got
