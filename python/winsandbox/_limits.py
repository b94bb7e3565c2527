"""`Limits`: a frozen, validated value; the names are the CLI's."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Optional, Union

from . import _winsandbox

Size = Union[int, str]
Seconds = Union[int, float, str]

PRIORITIES = ("idle", "below_normal", "normal", "above_normal", "high")


def _size(name: str, value: Optional[Size], *, zero_ok: bool = False) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{name}: expected bytes as an int or a string like '256MiB', got {value!r}")
    n = _winsandbox.parse_size(name, value) if isinstance(value, str) else value
    if n < 0 or (n == 0 and not zero_ok):
        raise ValueError(f"invalid {name}: {value!r} bytes (must be {'>= 0' if zero_ok else '> 0'})")
    if n > 1 << 60:
        raise ValueError(f"invalid {name}: {value!r} is more than 1 EiB")
    return n


def _seconds(name: str, value: Optional[Seconds]) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{name}: expected seconds as a number or a string like '1.5s', got {value!r}")
    s = _winsandbox.parse_duration(name, value) if isinstance(value, str) else float(value)
    if math.isnan(s) or math.isinf(s) or s <= 0:
        raise ValueError(f"invalid {name}: {value!r} (must be a positive, finite number of seconds)")
    if s > 365 * 24 * 3600:
        raise ValueError(f"invalid {name}: {value!r} is more than a year")
    return s


def _count(name: str, value: Optional[int], lo: int = 1, hi: int = 2**32 - 1) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"invalid {name}: {value} (must be from {lo} to {hi})")
    return value


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
        if priority is not None:
            if not isinstance(priority, str):
                raise TypeError(f"priority: expected a string, got {priority!r}")
            priority = priority.lower().replace("-", "_")
            if priority not in PRIORITIES:
                raise ValueError(f"invalid priority: {priority!r} (one of {', '.join(PRIORITIES)})")
        for flag, v in (("ui_restrictions", ui_restrictions), ("no_crash_dialogs", no_crash_dialogs)):
            if not isinstance(v, bool):
                raise TypeError(f"{flag}: expected a bool, got {v!r}")
        values: dict[str, Any] = {
            "memory": _size("memory", memory),
            "job_memory": _size("job_memory", job_memory),
            "cpu_time": _seconds("cpu_time", cpu_time),
            "wall_time": _seconds("wall_time", wall_time),
            "processes": _count("processes", processes),
            "total_processes": _count("total_processes", total_processes),
            "output_limit": _size("output_limit", output_limit, zero_ok=True),
            "cpu_rate": _count("cpu_rate", cpu_rate, 1, 100),
            "affinity": _count("affinity", affinity, 1, 2**64 - 1),
            "priority": priority,
            "io_rate": _size("io_rate", io_rate),
            "ui_restrictions": ui_restrictions,
            "no_crash_dialogs": no_crash_dialogs,
        }
        for k, v in values.items():
            object.__setattr__(self, k, v)
        # what the native layer is given, computed once (not a field)
        object.__setattr__(self, "_kwargs", values)

    def replace(self, **changes: Any) -> Limits:
        """A copy with some fields changed (validated again)."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return Limits(**current)

    def native(self) -> dict[str, Any]:
        """The keyword arguments of the native layer (do not modify)."""
        kwargs: dict[str, Any] = self.__dict__["_kwargs"]
        return kwargs
