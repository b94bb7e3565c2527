"""`Limits`: a frozen, validated value; the names are the CLI's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Optional, Union

from . import _winsandbox

Size = Union[int, str]
Seconds = Union[int, float, str]


@dataclass(frozen=True, init=False)
class Limits:
    """Limits of one sandboxed run; every field is optional.

    Sizes are bytes (``int``) or strings with binary units (``"256MiB"``,
    ``"1.5G"``); times are seconds (``int``/``float``) or strings (``"1.5s"``,
    ``"200ms"``). Invalid values raise ``ValueError``/``TypeError`` naming the
    field. See the README's limits table for what enforces each one.
    """

    memory: Optional[int]
    """Committed memory of any one process, bytes."""
    job_memory: Optional[int]
    """Committed memory of the whole process tree, bytes."""
    cpu_time: Optional[float]
    """CPU time, user + kernel, of the whole tree, seconds."""
    wall_time: Optional[float]
    """Wall-clock time, seconds."""
    processes: Optional[int]
    """Processes alive at once (the program itself counts)."""
    total_processes: Optional[int]
    """Processes started in total."""
    output_limit: Optional[int]
    """Bytes of stdout + stderr kept; more gives OLE."""
    cpu_rate: Optional[int]
    """Hard cap on CPU use, percent of the machine (1-100). Windows only."""
    affinity: Optional[int]
    """Processor mask. Windows only."""
    priority: Optional[str]
    """idle, below_normal, normal, above_normal or high."""
    io_rate: Optional[int]
    """Disk bandwidth, bytes per second. Windows only."""
    ui_restrictions: bool
    """Desktop, clipboard and global-atom restrictions (Windows; default on)."""
    no_crash_dialogs: bool
    """A crash ends the process at once, never with a dialog (default on)."""

    def __init__(
        self,
        *,
        memory: Optional[Size] = None,
        job_memory: Optional[Size] = None,
        cpu_time: Optional[Seconds] = None,
        wall_time: Optional[Seconds] = None,
        processes: Optional[int] = None,
        total_processes: Optional[int] = None,
        output_limit: Optional[Size] = None,
        cpu_rate: Optional[int] = None,
        affinity: Optional[int] = None,
        priority: Optional[str] = None,
        io_rate: Optional[Size] = None,
        ui_restrictions: bool = True,
        no_crash_dialogs: bool = True,
    ) -> None:
        # Checked in Rust, the one place limits are checked; kept as applied.
        given: dict[str, object] = {
            "memory": memory,
            "job_memory": job_memory,
            "cpu_time": cpu_time,
            "wall_time": wall_time,
            "processes": processes,
            "total_processes": total_processes,
            "output_limit": output_limit,
            "cpu_rate": cpu_rate,
            "affinity": affinity,
            "priority": priority,
            "io_rate": io_rate,
            "ui_restrictions": ui_restrictions,
            "no_crash_dialogs": no_crash_dialogs,
        }
        for k, v in _winsandbox.check_limits(given).items():
            object.__setattr__(self, k, v)

    def replace(self, **changes: Any) -> Limits:
        """A copy with some fields changed (validated again)."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return Limits(**current)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of every field (sizes in bytes, times in seconds);
        `from_dict` gives back an equal `Limits`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Limits:
        """The `Limits` of a dict such as `to_dict` makes; missing fields take
        their defaults, an unknown one is a ValueError naming it."""
        if not isinstance(d, Mapping):
            raise TypeError(f"limits: expected a dict, got {d!r}")
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                raise ValueError(f"limits: unknown field {k!r} (known: {', '.join(sorted(known))})")
        return cls(**d)


def _limits_arg(name: str, value: object) -> Optional[Limits]:
    """The argument ``name``: None or a `Limits`, else a TypeError naming it."""
    if value is not None and not isinstance(value, Limits):
        raise TypeError(f"{name}: expected winsandbox.Limits, got {value!r}")
    return value
