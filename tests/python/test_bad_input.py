"""Bad input gets a clear exception naming the argument, before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

import winsandbox
from conftest import PY
from winsandbox import Limits, SandboxError

OK = [PY, "-c", "pass"]


def untyped(v: object) -> Any:
    """``v`` as a caller without a type checker passes it."""
    return v


def _cases(tmp: Path) -> list[tuple[str, Callable[[], Any], type[BaseException], str]]:
    d = tmp / "dir"
    d.mkdir()
    f = tmp / "file"
    f.write_text("x")
    return [
        ("input=5", lambda: winsandbox.run(OK, input=untyped(5)), TypeError, "input"),
        ("input=list", lambda: winsandbox.run(OK, input=untyped([1, 2, 3])), TypeError, "input"),
        ("stdin=bytes", lambda: winsandbox.run(OK, stdin=untyped(str(f).encode())), TypeError, "stdin"),
        ("stdin=dir", lambda: winsandbox.run(OK, stdin=d), IsADirectoryError, "stdin"),
        ("stdin=missing", lambda: winsandbox.run(OK, stdin=tmp / "none"), FileNotFoundError, "stdin"),
        ("env value", lambda: winsandbox.run(OK, env=untyped({"A": 1})), TypeError, "env"),
        ("env list", lambda: winsandbox.run(OK, env=untyped(["A=1"])), TypeError, "env"),
        ("extra_env value", lambda: winsandbox.run(OK, extra_env=untyped({"A": 1})), TypeError, "extra_env"),
        ("Sandbox(str)", lambda: winsandbox.Sandbox(untyped("x")), TypeError, "limits"),
        ("run limits", lambda: winsandbox.run(OK, limits=untyped(5)), TypeError, "limits"),
        ("cwd=5", lambda: winsandbox.run(OK, cwd=untyped(5)), TypeError, "cwd"),
        ("cwd file", lambda: winsandbox.run(OK, cwd=f), NotADirectoryError, "cwd"),
        ("cwd missing", lambda: winsandbox.run(OK, cwd=tmp / "none"), FileNotFoundError, "cwd"),
        ("stdout=7", lambda: winsandbox.run(OK, stdout=7), ValueError, "stdout"),
        ("stderr=1.5", lambda: winsandbox.run(OK, stderr=untyped(1.5)), TypeError, "stderr"),
        ("dir as program", lambda: winsandbox.run([str(d)]), IsADirectoryError, "args"),
        ("cpu_time huge", lambda: Limits(cpu_time=10**400), TypeError, "cpu_time"),
    ]


@pytest.mark.parametrize("i", range(17))
def test_bad_input_names_the_argument(tmp_path: Path, i: int) -> None:
    cases = _cases(tmp_path)
    assert len(cases) == 17
    name, call, exc, arg = cases[i]
    with pytest.raises(exc) as e:
        call()
    assert arg in str(e.value), f"{name}: {e.value}"
    if issubclass(exc, OSError):
        assert isinstance(e.value, SandboxError)


def test_a_missing_program_says_which(tmp_path: Path) -> None:
    prog = str(tmp_path / "no-such-program")
    with pytest.raises(FileNotFoundError) as e:
        winsandbox.run([prog])
    assert "no-such-program" in str(e.value) and "failed" in str(e.value)
    assert "no such program failed" not in str(e.value)


def test_an_unwritable_output_file_is_named(tmp_path: Path) -> None:
    if winsandbox.BACKEND != "posix":
        pytest.skip("/proc/version is a Linux file")
    with pytest.raises(OSError) as e:
        winsandbox.run([PY, "-c", "print('x')"], stdout="/proc/version")
    assert "/proc/version" in str(e.value)


@pytest.mark.parametrize("args", [["run", "--env", "=x", "--", PY, "-c", "pass"], ["run", "--", "x\udcff"]])
def test_cli_usage_errors_exit_2_without_a_traceback(args: list[str]) -> None:
    if winsandbox.BACKEND != "posix" and "\udcff" in args[-1]:
        pytest.skip("a non-UTF-8 argument cannot be passed to a Windows process")
    argv: list[Any] = [sys.executable, "-m", "winsandbox", *args]
    if winsandbox.BACKEND == "posix":
        argv = [a.encode("utf-8", "surrogateescape") for a in argv]
    p = subprocess.run(argv, capture_output=True, check=False)
    assert p.returncode == 2, p
    assert b"Traceback" not in p.stderr, p.stderr
