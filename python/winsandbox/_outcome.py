"""What a run gives back: `Verdict`, `Outcome`; what a `Sandbox` reports: `Accounting`, `ProcessInfo`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, AnyStr, Generic, Optional, cast

from . import _winsandbox


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


_VERDICTS = {v.value: v for v in Verdict}


def _outcome(
    argv: list[str], native: _winsandbox._OutcomeDict, text: bool, encoding: Optional[str], errors: Optional[str]
) -> Outcome[Any]:
    """The `Outcome` of the native result `d`, whose keys are Outcome's field
    names but for ``args`` and ``cpu_time`` (tests/python/test_run.py checks
    it). Filled in place: a frozen dataclass's ``__init__`` for 21 fields is a
    fifth of the Python layer's cost per run."""
    d = cast("dict[str, Any]", native)  # the same dict, given the fields Outcome adds
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
