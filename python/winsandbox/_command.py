"""What every way of starting a program shares: argv, the environment, the stdio constants."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Optional, Union

from . import _winsandbox

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
    return argv


def _env_changes(
    env: Optional[Mapping[str, str]], extra_env: Optional[Mapping[str, Optional[str]]]
) -> tuple[Optional[list[tuple[str, Optional[str]]]], bool]:
    changes: list[tuple[str, Optional[str]]] = []
    inherit = env is None
    if env is not None:
        changes.extend((str(k), str(v)) for k, v in env.items())
    if extra_env is not None:
        changes.extend((str(k), None if v is None else str(v)) for k, v in extra_env.items())
    return (changes or None), inherit
