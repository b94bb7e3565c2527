# Stub of the native module (src/python.rs). Kept honest by
# `python -m mypy.stubtest winsandbox._winsandbox` (see .mypy-stubtest-allowlist).
from os import PathLike
from types import TracebackType
from typing import Any, Optional, Union, final

__version__: str
PIPE: int
DEVNULL: int

_Path = Union[str, PathLike[str]]

@final
class Run:
    @property
    def pid(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def wait(self, timeout: Optional[float] = None) -> Optional[dict[str, Any]]: ...
    def kill(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Run: ...
    def __exit__(
        self,
        _t: Optional[type[BaseException]],
        _v: Optional[BaseException],
        _tb: Optional[TracebackType],
    ) -> None: ...

@final
class Process:
    @property
    def pid(self) -> int: ...
    def wait(self, timeout: Optional[float] = None) -> Optional[int]: ...

@final
class Sandbox:
    def __new__(
        cls,
        *,
        memory: Optional[int] = None,
        job_memory: Optional[int] = None,
        cpu_time: Optional[float] = None,
        wall_time: Optional[float] = None,
        processes: Optional[int] = None,
        total_processes: Optional[int] = None,
        output_limit: Optional[int] = None,
        cpu_rate: Optional[int] = None,
        affinity: Optional[int] = None,
        priority: Optional[str] = None,
        io_rate: Optional[int] = None,
        ui_restrictions: bool = True,
        no_crash_dialogs: bool = True,
    ) -> Sandbox: ...
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
    def processes(self) -> list[dict[str, Any]]: ...
    def accounting(self) -> dict[str, Any]: ...
    def terminate(self, exit_code: int = 1) -> None: ...
    def hit(self) -> Optional[tuple[str, str, str]]: ...
    def close(self) -> None: ...
    def __enter__(self) -> Sandbox: ...
    def __exit__(
        self,
        _t: Optional[type[BaseException]],
        _v: Optional[BaseException],
        _tb: Optional[TracebackType],
    ) -> None: ...

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
    memory: Optional[int] = None,
    job_memory: Optional[int] = None,
    cpu_time: Optional[float] = None,
    wall_time: Optional[float] = None,
    processes: Optional[int] = None,
    total_processes: Optional[int] = None,
    output_limit: Optional[int] = None,
    cpu_rate: Optional[int] = None,
    affinity: Optional[int] = None,
    priority: Optional[str] = None,
    io_rate: Optional[int] = None,
    ui_restrictions: bool = True,
    no_crash_dialogs: bool = True,
) -> Run: ...
def parse_size(field: str, value: str) -> int: ...
def parse_duration(field: str, value: str) -> float: ...
def cli_main(args: list[str]) -> int: ...
def wine_version() -> Optional[str]: ...
def backend_name() -> str: ...
