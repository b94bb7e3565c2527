"""winsandbox: run untrusted programs inside Windows Job Objects, with
enforced limits, whole-tree cleanup and an exact account of what happened.

On Linux and other POSIX systems the same API runs on a fallback backend
(process groups, rlimits, a monitor), for development and CI.
"""

from ._command import DEVNULL, PIPE, Isolation
from ._errors import IsolationError, SandboxError
from ._interactive import (
    TESTLIB_CODES,
    InteractiveOptions,
    InteractiveOutcome,
    run_interactive,
    run_interactive_async,
)
from ._limits import Limits
from ._outcome import Accounting, Outcome, ProcessInfo, Verdict, Worker
from ._run import Job, RunOptions, run, run_async, run_many
from ._sandbox import Sandbox, SandboxProcess
from ._winsandbox import __version__, backend_name

BACKEND: str = backend_name()
"""``"windows"`` (Job Objects) or ``"posix"`` (the fallback)."""

__all__ = [
    "BACKEND",
    "DEVNULL",
    "PIPE",
    "TESTLIB_CODES",
    "Accounting",
    "InteractiveOptions",
    "InteractiveOutcome",
    "Isolation",
    "IsolationError",
    "Job",
    "Limits",
    "Outcome",
    "ProcessInfo",
    "RunOptions",
    "Sandbox",
    "SandboxError",
    "SandboxProcess",
    "Verdict",
    "Worker",
    "__version__",
    "run",
    "run_async",
    "run_interactive",
    "run_interactive_async",
    "run_many",
]
