"""What a run gives back: `Verdict`, `Outcome`; what a `Sandbox` reports: `Accounting`, `ProcessInfo`."""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, AnyStr, Generic, Optional, cast

from ._limits import Limits


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
    WA = "WA"
    """Wrong answer: an interactive run's interactor said so (never a single run's verdict, nor PE and JF)."""
    PE = "PE"
    """Presentation error: the interactor said so."""
    JF = "JF"
    """Judge failure: the interactor failed, or said so."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Worker:
    """Where a run was judged, for runs a fleet worker judged
    (`winsandbox.celery`)."""

    hostname: str
    platform: str
    """``sys.platform`` of the worker ("win32", "linux")."""
    backend: str
    """``winsandbox.BACKEND`` there: "windows" or "posix"."""
    limits: Limits
    """The limits the run was given; what the system could not apply is the
    outcome's ``not_applied``."""

    def to_dict(self) -> dict[str, Any]:
        return {"hostname": self.hostname, "platform": self.platform, "backend": self.backend,
                "limits": self.limits.to_dict()}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Worker:
        return cls(
            hostname=_field(d, "hostname", str, "worker"),
            platform=_field(d, "platform", str, "worker"),
            backend=_field(d, "backend", str, "worker"),
            limits=Limits.from_dict(_field(d, "limits", dict, "worker")),
        )


def _field(d: Mapping[str, Any], key: str, kind: Any, what: str, optional: bool = False) -> Any:
    """``d[key]``, checked to be a ``kind`` (or None when ``optional``)."""
    if key not in d:
        if optional:
            return None
        raise ValueError(f"{what}: the key {key!r} is missing")
    v = d[key]
    if v is None and optional:
        return None
    ok = isinstance(v, kind) and not (isinstance(v, bool) and kind in (int, (int, float)))
    if not ok:
        raise TypeError(f"{what}: {key!r} must be {getattr(kind, '__name__', kind)}, got {v!r}")
    return v


# The keys of the CLI's --json outcome, in its order, after "args".
_NUMBERS = ("pid", "cpu_time", "user_time", "kernel_time", "wall_time", "peak_memory", "peak_job_memory",
            "processes", "read_bytes", "write_bytes")  # fmt: skip


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
    isolation: str = "none"
    """The isolation level it ran under ("none", "strict", "restricted")."""
    workdir: Optional[str] = None
    """The working directory made for an isolated run given no ``cwd``, when
    it was asked to be kept (``keep_workdir``): yours to read and remove."""
    error: Optional[str] = None
    worker: Optional[Worker] = None
    """Where it ran, when a fleet worker judged it (`winsandbox.celery`)."""

    @property
    def returncode(self) -> Optional[int]:
        """``exit_code``, under ``subprocess``'s name."""
        return self.exit_code

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict, in the CLI's ``--json`` schema (its keys, in its
        order, output as text) with ``args`` first, and ``text``: whether
        ``stdout``/``stderr`` are str. Bytes output that is not UTF-8 also
        travels exactly as ``stdout_base64``/``stderr_base64``.
        `from_dict` gives back an equal `Outcome`."""
        d: dict[str, Any] = {"args": list(self.args), "verdict": self.verdict.value, "mechanism": self.mechanism,
                             "limit": self.limit, "exit_code": self.exit_code, "status": self.status}  # fmt: skip
        for k in _NUMBERS:
            d[k] = getattr(self, k)
        text = isinstance(self.stdout, str)
        for k in ("stdout", "stderr"):
            v: Any = getattr(self, k)
            if text:
                d[k] = v
            else:
                try:
                    d[k] = v.decode("utf-8")
                except UnicodeDecodeError:
                    d[k] = v.decode("utf-8", "replace")
                    d[k + "_base64"] = base64.b64encode(v).decode("ascii")
        d["truncated"] = self.truncated
        d["not_applied"] = [{"limit": n, "reason": r} for n, r in self.not_applied]
        d["isolation"] = self.isolation
        d["workdir"] = self.workdir
        d["error"] = self.error
        d["text"] = text
        if self.worker is not None:
            d["worker"] = self.worker.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Outcome[Any]:
        """The `Outcome` that `to_dict` made ``d`` from. A missing key is a
        ValueError and a value of the wrong type a TypeError, naming it."""
        if not isinstance(d, Mapping):
            raise TypeError(f"outcome: expected a dict, got {d!r}")
        w = "outcome"
        args = _field(d, "args", list, w)
        if not all(isinstance(a, str) for a in args):
            raise TypeError(f"outcome: 'args' must be a list of str, got {args!r}")
        name = _field(d, "verdict", str, w)
        try:
            verdict = Verdict(name)
        except ValueError:
            raise ValueError(f"outcome: unknown verdict {name!r}") from None
        text = _field(d, "text", bool, w, optional=True)
        out: dict[str, Any] = {}
        for k in ("stdout", "stderr"):
            s = _field(d, k, str, w)
            if text:
                out[k] = s
            elif d.get(k + "_base64") is not None:
                out[k] = base64.b64decode(_field(d, k + "_base64", str, w), validate=True)
            else:
                out[k] = s.encode("utf-8")
        nums: dict[str, Any] = {
            k: float(_field(d, k, (int, float), w)) if k.endswith("_time") else _field(d, k, int, w) for k in _NUMBERS
        }
        na = _field(d, "not_applied", list, w)
        worker = _field(d, "worker", dict, w, optional=True)
        o = cls(
            args=tuple(args),
            verdict=verdict,
            mechanism=_field(d, "mechanism", str, w, optional=True),
            limit=_field(d, "limit", str, w, optional=True),
            exit_code=_field(d, "exit_code", int, w, optional=True),
            status=_field(d, "status", str, w, optional=True),
            **nums,
            stdout=out["stdout"],
            stderr=out["stderr"],
            truncated=_field(d, "truncated", bool, w),
            not_applied=tuple((str(n["limit"]), str(n["reason"])) for n in na),
            isolation=_field(d, "isolation", str, w, optional=True) or "none",
            workdir=_field(d, "workdir", str, w, optional=True),
            error=_field(d, "error", str, w, optional=True),
            worker=None if worker is None else Worker.from_dict(worker),
        )
        return cast("Outcome[Any]", o)


def _outcome(o: Outcome[bytes], text: bool, encoding: Optional[str], errors: Optional[str]) -> Outcome[Any]:
    """The native module's `Outcome` (made in place there, with bytes),
    decoded when the caller asked for text."""
    if text:
        enc, er = encoding or "utf-8", errors or "replace"
        d = o.__dict__
        d["stdout"] = o.stdout.decode(enc, er).replace("\r\n", "\n")
        d["stderr"] = o.stderr.decode(enc, er).replace("\r\n", "\n")
    return o


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
