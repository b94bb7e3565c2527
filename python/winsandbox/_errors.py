"""`SandboxError` and `IsolationError`, raised by the native module itself:
an OSError that keeps the system's code and its built-in subclass."""

from __future__ import annotations

from . import _winsandbox

SandboxError = _winsandbox.SandboxError
SandboxError.__module__ = "winsandbox"

IsolationError = _winsandbox.IsolationError
IsolationError.__module__ = "winsandbox"

_sandbox_error = _winsandbox.sandbox_error
"""An OSError raised in Python (a bad ``cwd``...) as the matching `SandboxError`."""
