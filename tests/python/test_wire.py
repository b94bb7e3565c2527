"""What travels between machines: `Job`, `Limits` and `Outcome` to and from
JSON-safe dicts, and pickled (Celery, Dask's client.map and Ray carry them)."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import winsandbox
from conftest import py
from winsandbox import Job, Limits, Outcome, Verdict, Worker


def json_trip(d: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(d))
    assert isinstance(out, dict)
    return out


def test_limits_round_trip() -> None:
    lim = Limits(memory="64MiB", cpu_time="250ms", wall_time=2, processes=3, output_limit=1000, priority="idle")
    d = lim.to_dict()
    assert d["memory"] == 64 << 20 and d["cpu_time"] == 0.25 and d["priority"] == "idle"
    assert Limits.from_dict(json_trip(d)) == lim
    assert Limits.from_dict({}) == Limits()
    assert pickle.loads(pickle.dumps(lim)) == lim
    with pytest.raises(ValueError, match="'wall'"):
        Limits.from_dict({"wall": 1})
    with pytest.raises(ValueError, match="memory"):
        Limits.from_dict({"memory": "lots"})


def test_job_round_trip(tmp_path: Path) -> None:
    job = Job(args=["prog", "a b"], input=b"\x00\xff in", limits=Limits(wall_time=1), cwd=tmp_path,
              env={"A": "1"}, extra_env={"B": None}, stdin=None)  # fmt: skip
    d = json_trip(job.to_dict())
    assert d["input_base64"] == "AP8gaW4="
    back = Job.from_dict(d)
    assert back == replace(job, args=("prog", "a b"), cwd=str(tmp_path))
    assert pickle.loads(pickle.dumps(job)) == job
    assert Job.from_dict(Job(args=["x"], stdin="in.txt").to_dict()).stdin == "in.txt"
    with pytest.raises(ValueError, match="'argv'"):
        Job.from_dict({"argv": ["x"]})
    with pytest.raises(TypeError, match="args"):
        Job.from_dict({"args": "x"})
    with pytest.raises(TypeError, match="args"):
        Job(args="prog").to_dict()


def test_outcome_round_trip_of_a_real_run() -> None:
    o = winsandbox.run(py("import sys; sys.stdout.buffer.write(b'\\xff\\xfeok'); sys.stderr.write('e'); sys.exit(3)"))
    assert o.verdict is Verdict.RE and o.stdout == b"\xff\xfeok"
    d = json_trip(o.to_dict())
    # the CLI's --json keys, in its order, then the round trip's own
    cli = ["verdict", "mechanism", "limit", "exit_code", "status", "pid", "cpu_time", "user_time", "kernel_time",
           "wall_time", "peak_memory", "peak_job_memory", "processes", "read_bytes", "write_bytes", "stdout",
           "stderr", "truncated", "not_applied", "error"]  # fmt: skip
    assert [k for k in d if k in cli] == cli
    assert d["stdout"] == "\ufffd\ufffdok" and d["stdout_base64"] == "//5vaw==" and "stderr_base64" not in d
    assert d["exit_code"] == 3 and d["text"] is False
    back = Outcome.from_dict(d)
    assert back == o
    assert pickle.loads(pickle.dumps(o)) == o


def test_text_outcome_and_worker_round_trip() -> None:
    o = winsandbox.run(py("print('héllo')"), text=True)
    w = Worker(hostname="h", platform="linux", backend="posix", limits=Limits(cpu_time=1))
    o2 = replace(o, worker=w)
    d = json_trip(o2.to_dict())
    assert d["stdout"] == "héllo\n" and d["text"] is True and d["worker"]["limits"]["cpu_time"] == 1.0
    back = Outcome.from_dict(d)
    assert back == o2 and isinstance(back.stdout, str)
    assert pickle.loads(pickle.dumps(o2)) == o2 and hash(o2) == hash(back)


def test_bad_outcome_dicts_name_the_key() -> None:
    d = winsandbox.run(py("pass")).to_dict()
    for key, exc in (("verdict", ValueError), ("wall_time", ValueError)):
        bad = dict(d)
        del bad[key]
        with pytest.raises(exc, match=key):
            Outcome.from_dict(bad)
    with pytest.raises(TypeError, match="pid"):
        Outcome.from_dict(dict(d, pid="1"))
    with pytest.raises(ValueError, match="verdict"):
        Outcome.from_dict(dict(d, verdict="XX"))
