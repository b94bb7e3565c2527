"""`Sandbox`: a long-lived job; `SandboxProcess`: a process started in it."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Optional

from . import _winsandbox
from ._command import Isolation, StrPath, _argv, _confinement, _cwd, _env_changes, _output, _stdin_file
from ._limits import Limits, _limits_arg
from ._outcome import Accounting, ProcessInfo, Verdict


class SandboxProcess:
    """A process started in a `Sandbox`; like ``subprocess.Popen`` where the
    names match (``args``, ``pid``, ``returncode``, ``poll``, ``wait``,
    ``kill``, ``terminate``). Its exit code is as `Outcome.exit_code`: on
    Linux, minus the signal that ended it."""

    def __init__(self, native: _winsandbox.Process, args: list[str]) -> None:
        self._native = native
        self.args = args
        self.returncode: Optional[int] = None

    @property
    def pid(self) -> int:
        return self._native.pid

    def poll(self) -> Optional[int]:
        """The exit code if it has ended, else None (never waits)."""
        return self.returncode if self.returncode is not None else self._wait(0)

    def wait(self, timeout: Optional[float] = None) -> int:
        """The exit code once it ends; ``subprocess.TimeoutExpired`` if it
        has not within ``timeout`` seconds."""
        rc = self.returncode if self.returncode is not None else self._wait(timeout)
        if rc is None:
            raise subprocess.TimeoutExpired(self.args, timeout if timeout is not None else 0.0)
        return rc

    def kill(self) -> None:
        """Ends this process now (its children stay in the job: `Sandbox.terminate` ends all)."""
        self._native.kill()

    terminate = kill
    """As `kill` (as ``Popen.terminate`` is on Windows)."""

    def _wait(self, timeout: Optional[float]) -> Optional[int]:
        rc = self._native.wait(timeout)
        if rc is not None:
            self.returncode = rc
        return rc


class Sandbox:
    """A long-lived job: start several processes into it, read its accounting
    and process list while they run, terminate it. Leaving the ``with``
    block (or `close`) kills every process in it."""

    def __init__(
        self,
        limits: Optional[Limits] = None,
        *,
        isolation: Isolation = "none",
        readable: Optional[Sequence[StrPath]] = None,
        writable: Optional[Sequence[StrPath]] = None,
    ) -> None:
        """``isolation`` (with ``readable``/``writable``) isolates every
        process started into it, as `run` does each run; a level this system
        does not enforce raises `IsolationError` (a `SandboxError`) here."""
        lim = _limits_arg("limits", limits) or Limits()
        confined = _confinement(isolation, readable, writable)
        self._native = _winsandbox.Sandbox(lim, confined)
        self.limits = lim
        self.isolation: Isolation = confined[0]

    def spawn(
        self,
        args: Sequence[StrPath],
        *,
        cwd: Optional[StrPath] = None,
        env: Optional[Mapping[str, str]] = None,
        extra_env: Optional[Mapping[str, Optional[str]]] = None,
        stdin: Optional[StrPath] = None,
        stdout: Optional[StrPath] = None,
        stderr: Optional[StrPath] = None,
    ) -> SandboxProcess:
        """Starts a process in the job; stdio are files or the null device."""
        argv = _argv(args)
        changes, inherit = _env_changes(env, extra_env)

        def file(name: str, v: object) -> Optional[str]:
            f = _output(name, v)
            if isinstance(f, int):
                raise ValueError(f"{name}: a Sandbox process writes to a file or the null device (None), not {f!r}")
            return f

        stdin_f, stdout_f, stderr_f = _stdin_file(stdin), file("stdout", stdout), file("stderr", stderr)
        p = self._native.spawn(
            argv,
            cwd=_cwd(cwd),
            env=changes,
            env_inherit=inherit,
            stdin=stdin_f,
            stdout=stdout_f,
            stderr=stderr_f,
        )
        return SandboxProcess(p, argv)

    def process_ids(self) -> list[int]:
        return self._native.process_ids()

    def processes(self) -> list[ProcessInfo]:
        """What each live process of the job uses now: memory, handles, CPU."""
        return self._native.processes()

    def accounting(self) -> Accounting:
        return self._native.accounting()

    def terminate(self, exit_code: int = 1) -> None:
        """Ends every process in the job (Windows: with ``exit_code``)."""
        self._native.terminate(exit_code)

    def limit_hit(self) -> Optional[tuple[Verdict, str, str]]:
        """(verdict, limit, mechanism) when the monitor saw a limit crossed."""
        h = self._native.hit()
        return None if h is None else (Verdict(h[0]), h[1], h[2])

    @property
    def closed(self) -> bool:
        return self._native.closed

    def close(self) -> None:
        self._native.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
