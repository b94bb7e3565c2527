# Stub of the native module (src/python.rs). Kept honest by
# `python -m mypy.stubtest winsandbox._winsandbox` (see .mypy-stubtest-allowlist).
from os import PathLike
from typing import Callable, Literal, Optional, Union, final

from ._limits import Limits
from ._outcome import Accounting, Outcome, ProcessInfo

_VerdictName = Literal["OK", "RE", "TLE", "WLE", "MLE", "OLE", "PLE", "SE", "WA", "PE", "JF"]
_MechanismName = Literal["kernel", "monitor", "exit", "sandbox"]
_LimitName = Literal[
    "memory",
    "job_memory",
    "cpu_time",
    "wall_time",
    "processes",
    "total_processes",
    "output_limit",
    "cpu_rate",
    "affinity",
    "priority",
    "io_rate",
    "ui_restrictions",
    "no_crash_dialogs",
]

__version__: str
PIPE: int
DEVNULL: int

_IsolationName = Literal["none", "strict", "restricted"]
# A run's isolation: its level, the paths it may read, the paths it may write.
_Isolation = tuple[_IsolationName, list[str], list[str]]

class SandboxError(OSError):
    """The sandbox could not do what was asked (an OSError keeping the code)."""

class IsolationError(SandboxError):
    """An isolation level this system does not enforce: nothing was started."""

def sandbox_error(e: OSError) -> OSError: ...

_Path = Union[str, PathLike[str]]

@final
class Run:
    @property
    def pid(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def done(self) -> bool: ...
    def wait(self, timeout: Optional[float] = None) -> Optional[Outcome[bytes]]: ...
    def on_done(self, callback: Callable[[], object]) -> None: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Run: ...
    def __exit__(self, *_exc: object) -> None: ...

@final
class Interaction:
    @property
    def pids(self) -> tuple[int, int]: ...
    @property
    def done(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    def wait(
        self, timeout: Optional[float] = None
    ) -> Optional[tuple[_VerdictName, Outcome[bytes], Outcome[bytes]]]: ...
    def on_done(self, callback: Callable[[], object]) -> None: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...

@final
class Process:
    @property
    def pid(self) -> int: ...
    def kill(self) -> None: ...
    def wait(self, timeout: Optional[float] = None) -> Optional[int]: ...

@final
class Sandbox:
    def __new__(cls, limits: Optional[Limits] = None, isolation: Optional[_Isolation] = None) -> Sandbox: ...
    @property
    def closed(self) -> bool: ...
    def spawn(
        self,
        argv: list[str],
        *,
        cwd: Optional[_Path] = None,
        env: Optional[list[tuple[str, Optional[str]]]] = None,
        env_inherit: bool = True,
        stdin: Optional[_Path] = None,
        stdout: Optional[_Path] = None,
        stderr: Optional[_Path] = None,
        spawn_path: str = "auto",
    ) -> Process: ...
    def process_ids(self) -> list[int]: ...
    def processes(self) -> list[ProcessInfo]: ...
    def accounting(self) -> Accounting: ...
    def terminate(self, exit_code: int = 1) -> None: ...
    def hit(self) -> Optional[tuple[_VerdictName, _LimitName, _MechanismName]]: ...
    def close(self) -> None: ...
    def __enter__(self) -> Sandbox: ...
    def __exit__(self, *_exc: object) -> None: ...

def start(
    argv: list[str],
    *,
    cwd: Optional[_Path] = None,
    env: Optional[list[tuple[str, Optional[str]]]] = None,
    env_inherit: bool = True,
    stdin: Union[bytes, _Path, None] = None,
    stdout: Union[int, _Path, None] = None,
    stderr: Union[int, _Path, None] = None,
    spawn_path: str = "auto",
    limits: Optional[Limits] = None,
    isolation: Optional[_Isolation] = None,
    keep_workdir: bool = False,
) -> Run: ...
def start_interactive(
    solution: list[str],
    interactor: list[str],
    *,
    cwd: Optional[_Path] = None,
    interactor_cwd: Optional[_Path] = None,
    env: Optional[list[tuple[str, Optional[str]]]] = None,
    env_inherit: bool = True,
    stderr: Union[int, _Path, None] = None,
    interactor_stderr: Union[int, _Path, None] = None,
    limits: Optional[Limits] = None,
    interactor_limits: Optional[Limits] = None,
    codes: Optional[list[tuple[int, str]]] = None,
    isolation: Optional[_Isolation] = None,
    interactor_isolation: Optional[_Isolation] = None,
) -> Interaction: ...
def check_limits(limits: dict[str, object]) -> dict[str, object]: ...
def cli_main(args: list[str]) -> int: ...
def wine_version() -> Optional[str]: ...
def backend_name() -> str: ...
def stop_callbacks() -> None: ...
