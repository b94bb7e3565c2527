"""The public API: `run`, `run_async`, `run_many`, `Sandbox`, `Outcome`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import os
import subprocess
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, AnyStr, Generic, Literal, Optional, Union, overload

from . import _winsandbox
from ._limits import Limits

StrPath = Union[str, "os.PathLike[str]"]
PIPE = _winsandbox.PIPE
"""Capture the stream (the default for stdout and stderr)."""
DEVNULL = _winsandbox.DEVNULL
"""Read and drop the stream (the output limit still counts it)."""

_NO_LIMITS = Limits()
_KNOWN_ERRORS: dict[type[OSError], type[OSError]] = {}
_KNOWN_LOCK = threading.Lock()


class SandboxError(OSError):
    """The sandbox could not do what was asked.

    An ``OSError``: ``winerror`` (Windows) and ``errno`` keep the system's code,
    and each error is also the matching built-in subclass, so
    ``except FileNotFoundError`` and ``except PermissionError`` work too.
    """


def _sandbox_error(e: OSError) -> OSError:
    base = type(e)
    if isinstance(e, SandboxError):
        return e
    with _KNOWN_LOCK:
        cls = _KNOWN_ERRORS.get(base)
        if cls is None:
            cls = SandboxError if base is OSError else type(f"Sandbox{base.__name__}", (SandboxError, base), {})
            cls.__module__ = __name__.rsplit(".", 1)[0]
            _KNOWN_ERRORS[base] = cls
    winerror = getattr(e, "winerror", None)
    new = cls(e.errno, e.strerror, e.filename, winerror) if winerror is not None else cls(e.errno, e.strerror)
    if winerror is None and e.errno is None:
        new = cls(*e.args)
    return new


class Verdict(str, enum.Enum):
    """What a grading system reports for a run."""

    OK = "OK"
    """Exit code 0 and no limit crossed."""
    RE = "RE"
    """Runtime error: non-zero exit code or crash."""
    TLE = "TLE"
    """CPU time limit."""
    WLE = "WLE"
    """Wall time limit."""
    MLE = "MLE"
    """Memory limit."""
    OLE = "OLE"
    """Output limit."""
    PLE = "PLE"
    """Process limit."""
    SE = "SE"
    """The sandbox itself failed."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Outcome(Generic[AnyStr]):
    """The exact account of one run. Attribute names are the JSON schema's."""

    args: tuple[str, ...]
    verdict: Verdict
    mechanism: Optional[str]
    """"kernel" (a job message), "monitor", "exit" or "sandbox"."""
    limit: Optional[str]
    """The limit field that fired ("memory", "wall_time"...), if one did."""
    exit_code: Optional[int]
    status: Optional[str]
    """"STATUS_ACCESS_VIOLATION", "SIGSEGV"... when the exit code is one."""
    pid: int
    cpu_time: float
    user_time: float
    kernel_time: float
    wall_time: float
    peak_memory: int
    peak_job_memory: int
    processes: int
    read_bytes: int
    write_bytes: int
    stdout: AnyStr
    """What was captured (empty when stdout went to a file or DEVNULL)."""
    stderr: AnyStr
    truncated: bool
    not_applied: tuple[tuple[str, str], ...] = ()
    """(limit, reason) for each limit this system could not apply."""
    error: Optional[str] = None

    @property
    def returncode(self) -> Optional[int]:
        """``exit_code``, under ``subprocess``'s name."""
        return self.exit_code

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


@dataclass(frozen=True)
class Job:
    """One submission for `run_many`."""

    args: Sequence[str]
    input: Optional[bytes] = None
    limits: Optional[Limits] = None
    cwd: Optional[StrPath] = None
    env: Optional[Mapping[str, str]] = None
    extra_env: Optional[Mapping[str, Optional[str]]] = None


def _argv(args: Union[StrPath, Sequence[StrPath]]) -> list[str]:
    if isinstance(args, (str, os.PathLike)):
        raise TypeError("args must be a sequence of strings (no shell): ['prog', 'arg'], not a string")
    argv = [os.fspath(a) for a in args]
    if not argv:
        raise ValueError("invalid args: empty argument list")
    for a in argv:
        if not isinstance(a, str):
            raise TypeError(f"args: expected str or path, got {a!r}")
    return argv


def _env_changes(
    env: Optional[Mapping[str, str]], extra_env: Optional[Mapping[str, Optional[str]]]
) -> tuple[Optional[list[tuple[str, Optional[str]]]], bool]:
    changes: list[tuple[str, Optional[str]]] = []
    inherit = env is None
    if env is not None:
        changes.extend((str(k), str(v)) for k, v in env.items())
    if extra_env is not None:
        changes.extend((str(k), None if v is None else str(v)) for k, v in extra_env.items())
    return (changes or None), inherit


def _start(
    args: Union[StrPath, Sequence[StrPath]],
    *,
    limits: Optional[Limits],
    input: Union[bytes, str, None],
    stdin: Optional[StrPath],
    stdout: Union[int, StrPath, None],
    stderr: Union[int, StrPath, None],
    capture_output: bool,
    encoding: Optional[str],
    errors: Optional[str],
    cwd: Optional[StrPath],
    env: Optional[Mapping[str, str]],
    extra_env: Optional[Mapping[str, Optional[str]]],
    timeout: Optional[float],
    spawn_path: str = "auto",
) -> tuple[list[str], _winsandbox.Run]:
    argv = _argv(args)
    lim = limits if limits is not None else _NO_LIMITS
    if not isinstance(lim, Limits):
        raise TypeError(f"limits: expected winsandbox.Limits, got {lim!r}")
    if timeout is not None:
        lim = lim.replace(wall_time=min(timeout, lim.wall_time) if lim.wall_time else timeout)
    if input is not None and stdin is not None:
        raise ValueError("stdin and input cannot both be given")
    data: Union[bytes, StrPath, None] = stdin
    if input is not None:
        data = input.encode(encoding or "utf-8", errors or "strict") if isinstance(input, str) else bytes(input)
    default = PIPE if capture_output else DEVNULL
    changes, inherit = _env_changes(env, extra_env)
    try:
        run = _winsandbox.start(
            argv,
            cwd=cwd,
            env=changes,
            env_inherit=inherit,
            stdin=data,
            stdout=default if stdout is None else stdout,
            stderr=default if stderr is None else stderr,
            spawn_path=spawn_path,
            limits=lim,
        )
    except OSError as e:
        raise _sandbox_error(e) from None
    return argv, run


_VERDICTS = {v.value: v for v in Verdict}


def _outcome(
    argv: list[str], d: dict[str, Any], text: bool, encoding: Optional[str], errors: Optional[str]
) -> Outcome[Any]:
    """The `Outcome` of the native result `d`, whose keys are Outcome's field
    names but for ``args`` and ``cpu_time`` (tests/python/test_run.py checks
    it). Filled in place: a frozen dataclass's ``__init__`` for 21 fields is a
    fifth of the Python layer's cost per run."""
    if text:
        enc, er = encoding or "utf-8", errors or "replace"
        d["stdout"] = d["stdout"].decode(enc, er).replace("\r\n", "\n")
        d["stderr"] = d["stderr"].decode(enc, er).replace("\r\n", "\n")
    d["args"] = tuple(argv)
    d["verdict"] = _VERDICTS[d["verdict"]]
    d["cpu_time"] = d["user_time"] + d["kernel_time"]
    d["not_applied"] = tuple(map(tuple, d["not_applied"]))
    o: Outcome[Any] = object.__new__(Outcome)
    o.__dict__.update(d)
    return o


def _wait(run: _winsandbox.Run) -> dict[str, Any]:
    try:
        d = run.wait()
    except OSError as e:
        raise _sandbox_error(e) from None
    finally:
        run.close()  # Ctrl-C included: nothing is left running
    assert d is not None
    return d


@overload
def run(
    args: Sequence[StrPath],
    *,
    limits: Optional[Limits] = ...,
    input: Union[bytes, str, None] = ...,
    stdin: Optional[StrPath] = ...,
    stdout: Union[int, StrPath, None] = ...,
    stderr: Union[int, StrPath, None] = ...,
    capture_output: bool = ...,
    text: Literal[False] = ...,
    encoding: None = ...,
    errors: None = ...,
    cwd: Optional[StrPath] = ...,
    env: Optional[Mapping[str, str]] = ...,
    extra_env: Optional[Mapping[str, Optional[str]]] = ...,
    timeout: Optional[float] = ...,
) -> Outcome[bytes]: ...
@overload
def run(
    args: Sequence[StrPath],
    *,
    limits: Optional[Limits] = ...,
    input: Union[bytes, str, None] = ...,
    stdin: Optional[StrPath] = ...,
    stdout: Union[int, StrPath, None] = ...,
    stderr: Union[int, StrPath, None] = ...,
    capture_output: bool = ...,
    text: Literal[True],
    encoding: Optional[str] = ...,
    errors: Optional[str] = ...,
    cwd: Optional[StrPath] = ...,
    env: Optional[Mapping[str, str]] = ...,
    extra_env: Optional[Mapping[str, Optional[str]]] = ...,
    timeout: Optional[float] = ...,
) -> Outcome[str]: ...
@overload
def run(
    args: Sequence[StrPath],
    *,
    limits: Optional[Limits] = ...,
    input: Union[bytes, str, None] = ...,
    stdin: Optional[StrPath] = ...,
    stdout: Union[int, StrPath, None] = ...,
    stderr: Union[int, StrPath, None] = ...,
    capture_output: bool = ...,
    text: bool = ...,
    encoding: str,
    errors: Optional[str] = ...,
    cwd: Optional[StrPath] = ...,
    env: Optional[Mapping[str, str]] = ...,
    extra_env: Optional[Mapping[str, Optional[str]]] = ...,
    timeout: Optional[float] = ...,
) -> Outcome[str]: ...
def run(
    args: Sequence[StrPath],
    *,
    limits: Optional[Limits] = None,
    input: Union[bytes, str, None] = None,
    stdin: Optional[StrPath] = None,
    stdout: Union[int, StrPath, None] = None,
    stderr: Union[int, StrPath, None] = None,
    capture_output: bool = True,
    text: bool = False,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    cwd: Optional[StrPath] = None,
    env: Optional[Mapping[str, str]] = None,
    extra_env: Optional[Mapping[str, Optional[str]]] = None,
    timeout: Optional[float] = None,
) -> Outcome[Any]:
    """Runs ``args`` in a new sandbox and returns what happened.

    Shaped like ``subprocess.run``: ``input`` (bytes, or str with ``text``)
    feeds stdin, ``stdin`` names a file instead; stdout and stderr are captured
    unless ``capture_output=False`` or given ``DEVNULL`` or a path; ``env``
    replaces the environment and ``extra_env`` changes it (``None`` removes a
    variable); ``timeout`` is the wall-time limit (the verdict is then ``WLE``,
    nothing is raised). A program that does not exist raises
    ``FileNotFoundError`` (a `SandboxError`). Ctrl-C raises
    ``KeyboardInterrupt`` and leaves nothing running.
    """
    argv, r = _start(
        args, limits=limits, input=input, stdin=stdin, stdout=stdout, stderr=stderr,
        capture_output=capture_output, encoding=encoding, errors=errors, cwd=cwd, env=env,
        extra_env=extra_env, timeout=timeout,
    )  # fmt: skip
    return _outcome(argv, _wait(r), text or encoding is not None, encoding, errors)


async def run_async(
    args: Sequence[StrPath],
    *,
    limits: Optional[Limits] = None,
    input: Union[bytes, str, None] = None,
    stdin: Optional[StrPath] = None,
    stdout: Union[int, StrPath, None] = None,
    stderr: Union[int, StrPath, None] = None,
    capture_output: bool = True,
    text: bool = False,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    cwd: Optional[StrPath] = None,
    env: Optional[Mapping[str, str]] = None,
    extra_env: Optional[Mapping[str, Optional[str]]] = None,
    timeout: Optional[float] = None,
) -> Outcome[Any]:
    """`run` for asyncio: waits on a thread of its own, never blocking the
    loop. Cancelling the task kills the whole process tree."""
    argv, r = _start(
        args, limits=limits, input=input, stdin=stdin, stdout=stdout, stderr=stderr,
        capture_output=capture_output, encoding=encoding, errors=errors, cwd=cwd, env=env,
        extra_env=extra_env, timeout=timeout,
    )  # fmt: skip
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[dict[str, Any]] = loop.create_future()

    def deliver(result: Optional[dict[str, Any]], exc: Optional[BaseException]) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            assert result is not None
            fut.set_result(result)

    def waiter() -> None:
        try:
            d = r.wait()
            res, exc = d, None
        except BaseException as e:
            res, exc = None, (_sandbox_error(e) if isinstance(e, OSError) else e)
        try:
            loop.call_soon_threadsafe(deliver, res, exc)
        except RuntimeError:
            pass  # the loop is closed

    t = threading.Thread(target=waiter, name=f"winsandbox-wait-{r.pid}", daemon=True)
    t.start()
    try:
        d = await asyncio.shield(fut)
    except asyncio.CancelledError:
        r.kill()
        await loop.run_in_executor(None, t.join)
        r.close()
        raise
    r.close()
    return _outcome(argv, d, text or encoding is not None, encoding, errors)


def _run_job(job: Union[Job, Sequence[str]], limits: Optional[Limits], text: bool) -> Outcome[Any]:
    spec = job if isinstance(job, Job) else Job(args=job)
    argv = [str(a) for a in spec.args] if not isinstance(spec.args, str) else [spec.args]
    try:
        if text:
            return run(spec.args, limits=spec.limits or limits, input=spec.input, cwd=spec.cwd,
                       env=spec.env, extra_env=spec.extra_env, text=True)  # fmt: skip
        return run(spec.args, limits=spec.limits or limits, input=spec.input, cwd=spec.cwd,
                   env=spec.env, extra_env=spec.extra_env)  # fmt: skip
    except Exception as e:  # one failure never stops the batch
        return Outcome(
            args=tuple(argv), verdict=Verdict.SE, mechanism="sandbox", limit=None, exit_code=None,
            status=None, pid=0, cpu_time=0.0, user_time=0.0, kernel_time=0.0, wall_time=0.0,
            peak_memory=0, peak_job_memory=0, processes=0, read_bytes=0, write_bytes=0,
            stdout="" if text else b"", stderr="" if text else b"", truncated=False,
            error=f"{type(e).__name__}: {e}",
        )  # fmt: skip


def run_many(
    jobs: Iterable[Union[Job, Sequence[str]]],
    *,
    concurrency: Optional[int] = None,
    limits: Optional[Limits] = None,
    text: bool = False,
) -> Iterator[Outcome[Any]]:
    """Runs many submissions, at most ``concurrency`` at once (default: the
    CPU count), and yields their outcomes in submission order. A job that
    cannot even start yields an outcome with verdict ``SE`` and ``error`` set:
    one failure never stops the batch. ``limits`` applies to jobs without
    their own. Stopping the iteration early kills what is still running."""
    n = concurrency if concurrency is not None else (os.cpu_count() or 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"invalid concurrency: {concurrency!r} (must be an int >= 1)")
    it = iter(jobs)
    pending: deque[concurrent.futures.Future[Outcome[Any]]] = deque()
    with concurrent.futures.ThreadPoolExecutor(max_workers=n, thread_name_prefix="winsandbox") as pool:
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < 2 * n:
                    try:
                        job = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append(pool.submit(_run_job, job, limits, text))
                if not pending:
                    return
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


@dataclass(frozen=True)
class Accounting:
    """What a `Sandbox`'s job used so far."""

    cpu_time: float
    user_time: float
    kernel_time: float
    peak_memory: int
    peak_job_memory: int
    processes: int
    active_processes: int
    read_bytes: int
    write_bytes: int


@dataclass(frozen=True)
class ProcessInfo:
    """One live process of a `Sandbox`, as the system reports it now."""

    pid: int
    name: str
    """The image's file name ("prog.exe"; on Linux the command name)."""
    working_set: int
    """Bytes of physical memory in use now."""
    peak_working_set: int
    private_memory: int
    """Committed private bytes (Windows: pagefile usage; Linux: VmData)."""
    handles: int
    """Open handles (Linux: open file descriptors; Wine reports 0)."""
    user_time: float
    kernel_time: float


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

    def __init__(self, limits: Optional[Limits] = None) -> None:
        lim = limits if limits is not None else Limits()
        try:
            self._native = _winsandbox.Sandbox(lim)
        except OSError as e:
            raise _sandbox_error(e) from None
        self.limits = lim

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
        changes, inherit = _env_changes(env, extra_env)
        argv = _argv(args)
        try:
            p = self._native.spawn(
                argv,
                cwd=cwd,
                env=changes,
                env_inherit=inherit,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
            )
        except OSError as e:
            raise _sandbox_error(e) from None
        return SandboxProcess(p, argv)

    def process_ids(self) -> list[int]:
        return self._native.process_ids()

    def processes(self) -> list[ProcessInfo]:
        """What each live process of the job uses now: memory, handles, CPU."""
        return [ProcessInfo(**p) for p in self._native.processes()]

    def accounting(self) -> Accounting:
        return Accounting(**self._native.accounting())

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
