"""What every way of starting a program shares: argv, the environment, the stdio constants."""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping, Sequence
from typing import Literal, Optional, Union

from . import _winsandbox
from ._errors import _sandbox_error

StrPath = Union[str, "os.PathLike[str]"]


PIPE = _winsandbox.PIPE
"""Capture the stream (the default for stdout and stderr)."""


DEVNULL = _winsandbox.DEVNULL
"""Read and drop the stream (the output limit still counts it)."""


def _argv(args: Union[StrPath, Sequence[StrPath]]) -> list[str]:
    if isinstance(args, (str, os.PathLike)):
        raise TypeError("args must be a sequence of strings (no shell): ['prog', 'arg'], not a string")
    argv = [os.fspath(a) for a in args]
    if not argv:
        raise ValueError("invalid args: empty argument list")
    for a in argv:
        if not isinstance(a, str):
            raise TypeError(f"args: expected str or path, got {a!r}")
    prog = argv[0]
    if any(s in prog for s in (os.sep, os.altsep) if s) and os.path.isdir(prog):
        raise _sandbox_error(IsADirectoryError(errno.EISDIR, "args[0] is a directory, not a program", prog))
    return argv


def _path(name: str, value: object) -> str:
    """``value`` as a path string, or a TypeError naming the argument."""
    p = os.fspath(value) if isinstance(value, (str, os.PathLike)) else value
    if isinstance(p, str):
        return p
    hint = " (a path as bytes is not accepted; data goes in input=)" if isinstance(p, bytes) else ""
    raise TypeError(f"{name}: expected a path (str or os.PathLike), got {type(value).__name__}{hint}")


def _cwd(cwd: object) -> Optional[str]:
    if cwd is None:
        return None
    p = _path("cwd", cwd)
    if not os.path.exists(p):
        raise _sandbox_error(FileNotFoundError(errno.ENOENT, "cwd: no such directory", p))
    if not os.path.isdir(p):
        raise _sandbox_error(NotADirectoryError(errno.ENOTDIR, "cwd is not a directory", p))
    return p


Isolation = Literal["none", "strict", "restricted"]
"""An isolation level (the README's table): ``"none"`` (the default),
``"strict"`` or ``"restricted"``."""

_LEVELS = ("none", "strict", "restricted")


def _isolation(level: object) -> Isolation:
    if not isinstance(level, str) or level not in _LEVELS:
        raise ValueError(f"invalid isolation: {level!r} (none, strict, restricted)")
    return level  # type: ignore[return-value]


def _confinement(
    isolation: object, readable: object = None, writable: object = None
) -> tuple[Isolation, list[str], list[str]]:
    """A run's isolation as the native module takes it: the level and its
    grants, checked (each error names its argument)."""
    return _isolation(isolation), _paths("readable", readable) or [], _paths("writable", writable) or []


def _paths(name: str, paths: object) -> Optional[list[str]]:
    """A list of existing paths (``readable``/``writable``), or None."""
    if paths is None:
        return None
    if isinstance(paths, (str, bytes)) or not isinstance(paths, Sequence):
        raise TypeError(f"{name}: expected a list of paths, got {paths!r}")
    out = []
    for x in paths:
        p = _path(name, x)
        if not os.path.exists(p):
            raise _sandbox_error(FileNotFoundError(errno.ENOENT, f"{name}: no such file or directory", p))
        out.append(p)
    return out


def _stdin_file(stdin: object) -> Optional[str]:
    if stdin is None:
        return None
    p = _path("stdin", stdin)
    if os.path.isdir(p):
        raise _sandbox_error(IsADirectoryError(errno.EISDIR, "stdin is a directory", p))
    if not os.path.exists(p):
        raise _sandbox_error(FileNotFoundError(errno.ENOENT, "stdin: no such file", p))
    return p


def _input_bytes(data: object, encoding: Optional[str], errors: Optional[str]) -> bytes:
    if isinstance(data, str):
        return data.encode(encoding or "utf-8", errors or "strict")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"input: expected bytes or str, got {type(data).__name__}")


def _output(name: str, value: object) -> Union[int, str, None]:
    """PIPE, DEVNULL, a path, or None (the default): checked, by name."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value in (PIPE, DEVNULL):
            return value
        raise ValueError(f"{name}: expected PIPE, DEVNULL or a path, got {value!r}")
    return _path(name, value)


def _env_changes(
    env: Optional[Mapping[str, str]], extra_env: Optional[Mapping[str, Optional[str]]]
) -> tuple[Optional[list[tuple[str, Optional[str]]]], bool]:
    changes: list[tuple[str, Optional[str]]] = []
    inherit = env is None
    for name, m, none_ok in (("env", env, False), ("extra_env", extra_env, True)):
        if m is None:
            continue
        if not isinstance(m, Mapping):
            raise TypeError(f"{name}: expected a mapping of str to str, got {type(m).__name__}")
        for k, v in m.items():
            if not isinstance(k, str):
                raise TypeError(f"{name}: variable names must be str, got {k!r}")
            if not (isinstance(v, str) or (none_ok and v is None)):
                want = "str or None" if none_ok else "str"
                raise TypeError(f"{name}: the value of {k!r} must be {want}, got {type(v).__name__}")
            changes.append((k, v))
    return (changes or None), inherit
