"""winsandbox: run untrusted programs inside Windows Job Objects, with
enforced limits, whole-tree cleanup and an exact account of what happened.

On Linux and other POSIX systems the same API runs on a fallback backend
(process groups, rlimits, a monitor), for development and CI.
"""

from ._api import (
    DEVNULL,
    PIPE,
    Accounting,
    Job,
    Outcome,
    ProcessInfo,
    Sandbox,
    SandboxError,
    SandboxProcess,
    Verdict,
    run,
    run_async,
    run_many,
)
from ._limits import Limits
from ._winsandbox import __version__, backend_name

BACKEND: str = backend_name()
"""``"windows"`` (Job Objects) or ``"posix"`` (the fallback)."""

__all__ = [
    "BACKEND",
    "DEVNULL",
    "PIPE",
    "Accounting",
    "Job",
    "Limits",
    "Outcome",
    "ProcessInfo",
    "Sandbox",
    "SandboxError",
    "SandboxProcess",
    "Verdict",
    "__version__",
    "run",
    "run_async",
    "run_many",
]
