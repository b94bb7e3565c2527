"""Running programs: `run`, `run_async`, `run_many` and its `Job`."""

from __future__ import annotations

import asyncio
import base64
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Optional, Protocol, TypedDict, TypeVar, Union, overload

from . import _winsandbox
from ._command import (
    DEVNULL,
    PIPE,
    Isolation,
    StrPath,
    _argv,
    _confinement,
    _cwd,
    _env_changes,
    _input_bytes,
    _isolation,
    _output,
    _stdin_file,
)
from ._limits import Limits, _limits_arg
from ._outcome import Outcome, Verdict, _outcome

if TYPE_CHECKING:
    from typing_extensions import Unpack

_NO_LIMITS = Limits()


def _flag(name: str, v: object) -> bool:
    if not isinstance(v, bool):
        raise TypeError(f"{name}: expected True or False, got {v!r}")
    return v


@dataclass(frozen=True)
class Job:
    """One submission for `run_many` (and `winsandbox.celery.run_many`).

    Its input travels inline (``input``) or as a path the runner can read
    (``stdin``); ``args`` and ``cwd`` may name shared paths the same way."""

    args: Sequence[str]
    input: Optional[bytes] = None
    limits: Optional[Limits] = None
    cwd: Optional[StrPath] = None
    env: Optional[Mapping[str, str]] = None
    extra_env: Optional[Mapping[str, Optional[str]]] = None
    stdin: Optional[StrPath] = None
    """A file to read stdin from, instead of ``input``."""
    isolation: Isolation = "none"
    readable: Sequence[StrPath] = ()
    writable: Sequence[StrPath] = ()
    keep_workdir: bool = False
    """Keep the working directory an isolated job given no ``cwd`` gets
    (`Outcome.workdir`); on a fleet it is on the worker's machine."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (``input`` as ``input_base64``); `from_dict` gives
        back an equal `Job` (paths as str)."""
        d: dict[str, Any] = {"args": _argv(self.args)}
        if self.input is not None:
            d["input_base64"] = base64.b64encode(_input_bytes(self.input, None, None)).decode("ascii")
        if self.stdin is not None:
            d["stdin"] = os.fspath(self.stdin)
        if self.limits is not None:
            d["limits"] = self.limits.to_dict()
        if self.cwd is not None:
            d["cwd"] = os.fspath(self.cwd)
        if self.env is not None:
            d["env"] = dict(self.env)
        if self.extra_env is not None:
            d["extra_env"] = dict(self.extra_env)
        if self.isolation != "none":
            d["isolation"] = self.isolation
        for k in ("readable", "writable"):
            if getattr(self, k):
                d[k] = [os.fspath(p) for p in getattr(self, k)]
        if self.keep_workdir:
            d["keep_workdir"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Job:
        """The `Job` of a dict such as `to_dict` makes; an unknown key is a
        ValueError naming it."""
        if not isinstance(d, Mapping):
            raise TypeError(f"job: expected a dict, got {d!r}")
        known = ("args", "input_base64", "stdin", "limits", "cwd", "env", "extra_env", "isolation", "readable",
                 "writable", "keep_workdir")  # fmt: skip
        for k in d:
            if k not in known:
                raise ValueError(f"job: unknown key {k!r} (known: {', '.join(known)})")
        if "args" not in d:
            raise ValueError("job: the key 'args' is missing")
        args = d["args"]
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            raise TypeError(f"job: 'args' must be a non-empty list of str, got {args!r}")
        raw = d.get("input_base64")
        lim = d.get("limits")
        return cls(
            args=tuple(args),
            input=None if raw is None else base64.b64decode(raw, validate=True),
            limits=None if lim is None else Limits.from_dict(lim),
            cwd=d.get("cwd"),
            env=d.get("env"),
            extra_env=d.get("extra_env"),
            stdin=d.get("stdin"),
            isolation=_isolation(d.get("isolation", "none")),
            readable=tuple(d.get("readable", ())),
            writable=tuple(d.get("writable", ())),
            keep_workdir=_flag("keep_workdir", d.get("keep_workdir", False)),
        )


def _start(
    args: Union[StrPath, Sequence[StrPath]],
    *,
    limits: Optional[Limits] = None,
    input: Union[bytes, str, None] = None,
    stdin: Optional[StrPath] = None,
    stdout: Union[int, StrPath, None] = None,
    stderr: Union[int, StrPath, None] = None,
    capture_output: bool = True,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    cwd: Optional[StrPath] = None,
    env: Optional[Mapping[str, str]] = None,
    extra_env: Optional[Mapping[str, Optional[str]]] = None,
    timeout: Optional[float] = None,
    spawn_path: str = "auto",
    isolation: Isolation = "none",
    readable: Optional[Sequence[StrPath]] = None,
    writable: Optional[Sequence[StrPath]] = None,
    keep_workdir: bool = False,
) -> _winsandbox.Run:
    argv = _argv(args)
    keep = _flag("keep_workdir", keep_workdir)
    confined = _confinement(isolation, readable, writable)
    lim = _limits_arg("limits", limits) or _NO_LIMITS
    if timeout is not None:
        lim = lim.replace(wall_time=min(timeout, lim.wall_time) if lim.wall_time else timeout)
    if input is not None and stdin is not None:
        raise ValueError("stdin and input cannot both be given")
    data: Union[bytes, str, None] = _stdin_file(stdin)
    if input is not None:
        data = _input_bytes(input, encoding, errors)
    default = PIPE if capture_output else DEVNULL
    out, err = _output("stdout", stdout), _output("stderr", stderr)
    changes, inherit = _env_changes(env, extra_env)
    cwd = _cwd(cwd)
    return _winsandbox.start(
        argv,
        cwd=cwd,
        env=changes,
        env_inherit=inherit,
        stdin=data,
        stdout=default if out is None else out,
        stderr=default if err is None else err,
        spawn_path=spawn_path,
        limits=lim,
        isolation=confined,
        keep_workdir=keep,
    )


_W = TypeVar("_W", covariant=True)


class _Ending(Protocol[_W]):
    """What a native run (`Run`, `Interaction`) gives to `_wait`."""

    def wait(self, timeout: Optional[float] = None) -> Optional[_W]: ...
    def close(self) -> None: ...


def _wait(run: _Ending[_W]) -> _W:
    """The run's result once it is over; closed in any case."""
    try:
        d = run.wait()
    finally:
        run.close()  # Ctrl-C included: nothing is left running
    assert d is not None
    return d


class RunOptions(TypedDict, total=False):
    """The keyword arguments of `run` and `run_async` besides ``text``,
    ``encoding`` and ``errors`` (for typing a wrapper's ``**options``)."""

    limits: Optional[Limits]
    input: Union[bytes, str, None]
    stdin: Optional[StrPath]
    stdout: Union[int, StrPath, None]
    stderr: Union[int, StrPath, None]
    capture_output: bool
    cwd: Optional[StrPath]
    env: Optional[Mapping[str, str]]
    extra_env: Optional[Mapping[str, Optional[str]]]
    timeout: Optional[float]
    isolation: Isolation
    readable: Optional[Sequence[StrPath]]
    writable: Optional[Sequence[StrPath]]
    keep_workdir: bool


_B = TypeVar("_B", covariant=True)
_S = TypeVar("_S", covariant=True)


class _Decoded(Protocol[_B, _S]):
    """How `run` and `run_async` are called, stated once for both: the
    outcome holds bytes (``_B``) unless ``text`` or an ``encoding`` asks for
    str (``_S``), as with ``subprocess.run``; the other keywords are
    `RunOptions`."""

    @overload
    def __call__(
        self,
        args: Sequence[StrPath],
        *,
        text: Literal[False] = ...,
        encoding: None = ...,
        errors: None = ...,
        **options: Unpack[RunOptions],
    ) -> _B: ...
    @overload
    def __call__(
        self,
        args: Sequence[StrPath],
        *,
        text: Literal[True],
        encoding: Optional[str] = ...,
        errors: Optional[str] = ...,
        **options: Unpack[RunOptions],
    ) -> _S: ...
    @overload
    def __call__(
        self,
        args: Sequence[StrPath],
        *,
        text: bool = ...,
        encoding: str,
        errors: Optional[str] = ...,
        **options: Unpack[RunOptions],
    ) -> _S: ...


def _run(
    args: Sequence[StrPath],
    *,
    text: bool = False,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    **options: Unpack[RunOptions],
) -> Outcome[Any]:
    """Runs ``args`` in a new sandbox and returns what happened.

    Shaped like ``subprocess.run`` (the keywords are `RunOptions`):
    ``limits`` (a `Limits`); ``input`` (bytes, or str with ``text``) feeds
    stdin, ``stdin`` names a file instead; stdout and stderr are captured
    unless ``capture_output=False`` or given ``DEVNULL`` or a path; ``cwd``;
    ``env`` replaces the environment and ``extra_env`` changes it (``None``
    removes a variable); ``timeout`` is the wall-time limit (the verdict is
    then ``WLE``, nothing is raised); ``text``/``encoding``/``errors`` decode
    the output. ``isolation`` (``"strict"``, ``"restricted"``) keeps the
    program from what it was not granted (``readable``, ``writable``, its
    ``cwd``; a fresh one is made when none is given, and removed unless
    ``keep_workdir`` keeps it for you: `Outcome.workdir`): a level this
    system does not enforce gives verdict ``SE``, nothing started. Bad arguments
    raise TypeError or ValueError naming them, before anything starts. A
    program that does not exist raises ``FileNotFoundError`` (a
    `SandboxError`). Ctrl-C raises ``KeyboardInterrupt`` and leaves nothing
    running.
    """
    text = text or encoding is not None
    try:
        r = _start(args, encoding=encoding, errors=errors, **options)
    except _winsandbox.IsolationError as e:
        return _failed(args, text, str(e), options.get("isolation", "none"))
    return _outcome(_wait(r), text, encoding, errors)


async def _run_async(
    args: Sequence[StrPath],
    *,
    text: bool = False,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    **options: Unpack[RunOptions],
) -> Outcome[Any]:
    """`run` for asyncio, never blocking the loop. No thread waits for the
    run: the engine's driver thread tells the loop once, when it is over.
    Cancelling the task kills the whole process tree."""
    text = text or encoding is not None
    try:
        r = _start(args, encoding=encoding, errors=errors, **options)
    except _winsandbox.IsolationError as e:
        return _failed(args, text, str(e), options.get("isolation", "none"))
    await _end_of(r)
    return _outcome(_wait(r), text, encoding, errors)


_run.__name__ = _run.__qualname__ = "run"
_run_async.__name__ = _run_async.__qualname__ = "run_async"
run: _Decoded[Outcome[bytes], Outcome[str]] = _run
run_async: _Decoded[Coroutine[Any, Any, Outcome[bytes]], Coroutine[Any, Any, Outcome[str]]] = _run_async


async def _end_of(r: Union[_winsandbox.Run, _winsandbox.Interaction]) -> None:
    """Returns once ``r`` is over, without a thread; cancelling the task
    kills its trees (and awaits their end) first."""
    loop = asyncio.get_running_loop()
    try:
        await _ended(r, loop)
    except asyncio.CancelledError:
        r.kill()
        try:
            await asyncio.shield(_ended(r, loop))
        finally:
            r.close()
        raise


async def _ended(r: Union[_winsandbox.Run, _winsandbox.Interaction], loop: asyncio.AbstractEventLoop) -> None:
    """Returns once ``r`` is over; the driver thread wakes the loop once."""
    fut: asyncio.Future[None] = loop.create_future()

    def notify() -> None:  # on the driver thread, or here if it is over already
        try:
            loop.call_soon_threadsafe(_settle, fut)
        except RuntimeError:
            pass  # the loop is closed

    r.on_done(notify)
    await fut


def _settle(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _failed(args: Sequence[StrPath], text: bool, error: str, isolation: str = "none") -> Outcome[Any]:
    """The outcome of a job that could not run: verdict ``SE``, ``error`` set."""
    argv = [os.fspath(a) for a in args] if not isinstance(args, (str, bytes)) else [str(args)]
    return Outcome(
        args=tuple(argv), verdict=Verdict.SE, mechanism="sandbox", limit=None, exit_code=None,
        status=None, pid=0, cpu_time=0.0, user_time=0.0, kernel_time=0.0, wall_time=0.0,
        peak_memory=0, peak_job_memory=0, processes=0, read_bytes=0, write_bytes=0,
        stdout="" if text else b"", stderr="" if text else b"", truncated=False,
        isolation=isolation, error=error,
    )  # fmt: skip


class _Pending:
    """A job of `run_many`: its run, or the outcome of a job that could not start."""

    __slots__ = ("args", "failed", "run", "text")

    def __init__(self, job: Union[Job, Sequence[str]], limits: Optional[Limits], text: bool,
                 ended: Callable[[], object]) -> None:  # fmt: skip
        spec = job if isinstance(job, Job) else Job(args=job)
        self.args = spec.args
        self.text = text
        self.run: Optional[_winsandbox.Run] = None
        self.failed: Optional[Outcome[Any]] = None
        try:
            self.run = _start(spec.args, limits=spec.limits or limits, input=spec.input, stdin=spec.stdin,
                              cwd=spec.cwd, env=spec.env, extra_env=spec.extra_env, isolation=spec.isolation,
                              readable=spec.readable, writable=spec.writable,
                              keep_workdir=spec.keep_workdir)  # fmt: skip
        except Exception as e:  # one failure never stops the batch
            self.failed = _failed(spec.args, text, f"{type(e).__name__}: {e}", spec.isolation)
            return
        self.run.on_done(ended)

    def ready(self) -> bool:
        return self.run is None or self.run.done

    def outcome(self) -> Outcome[Any]:
        if self.run is None:
            assert self.failed is not None
            return self.failed
        try:
            d = _wait(self.run)
        except Exception as e:
            return _failed(self.args, self.text, f"{type(e).__name__}: {e}")
        return _outcome(d, self.text, None, None)


def _run_job(job: Union[Job, Sequence[str]], limits: Optional[Limits], text: bool) -> Outcome[Any]:
    """One job to its end, a failure as ``SE`` (a fleet worker's task)."""
    return _Pending(job, limits, text, lambda: None).outcome()


def _take(ended: queue.SimpleQueue[None], block: bool) -> int:
    """How many runs ended (tokens taken from ``ended``): at least one if
    ``block``. On the main thread the wait wakes every 50 ms, so Ctrl-C is
    seen; elsewhere it sleeps until a run ends."""
    n = 0
    main = threading.current_thread() is threading.main_thread()
    while True:
        try:
            ended.get(block=block and n == 0, timeout=0.05 if main and block and n == 0 else None)
        except queue.Empty:
            if block and n == 0:
                continue
            return n
        n += 1


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
    their own. Stopping the iteration early kills what is still running.
    No thread waits for a run: the engine's driver thread carries them all."""
    n = concurrency if concurrency is not None else (os.cpu_count() or 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"invalid concurrency: {concurrency!r} (must be an int >= 1)")
    it = iter(jobs)
    ended: queue.SimpleQueue[None] = queue.SimpleQueue()
    pending: deque[_Pending] = deque()
    live = 0  # started and not yet seen ended
    try:
        exhausted = False
        while True:
            live -= _take(ended, block=False)
            while not exhausted and live < n:
                try:
                    job = next(it)
                except StopIteration:
                    exhausted = True
                    break
                p = _Pending(job, limits, text, lambda: ended.put(None))
                pending.append(p)
                live += p.run is not None
            if not pending:
                return
            if pending[0].ready():
                yield pending.popleft().outcome()
            else:
                live -= _take(ended, block=True)
    finally:
        for p in pending:
            if p.run is not None:
                p.run.close()
