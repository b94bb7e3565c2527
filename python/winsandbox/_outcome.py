"""What a run gives back: `Verdict`, `Outcome`; what a `Sandbox` reports: `Accounting`, `ProcessInfo`."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, AnyStr, Generic, Optional


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
