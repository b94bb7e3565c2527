"""`SandboxError`: an OSError that keeps the system's code and its built-in subclass."""

from __future__ import annotations

import threading

_KNOWN_ERRORS: dict[type[OSError], type[OSError]] = {}


_KNOWN_LOCK = threading.Lock()


class SandboxError(OSError):
    """The sandbox could not do what was asked.

    An ``OSError``: ``winerror`` (Windows) and ``errno`` keep the system's code,
    and each error is also the matching built-in subclass, so
    ``except FileNotFoundError`` and ``except PermissionError`` work too.
    """


def _sandbox_error(e: OSError) -> OSError:
    base = type(e)
    if isinstance(e, SandboxError):
        return e
    with _KNOWN_LOCK:
        cls = _KNOWN_ERRORS.get(base)
        if cls is None:
            cls = SandboxError if base is OSError else type(f"Sandbox{base.__name__}", (SandboxError, base), {})
            cls.__module__ = __name__.rsplit(".", 1)[0]
            _KNOWN_ERRORS[base] = cls
    winerror = getattr(e, "winerror", None)
    if winerror is not None:
        new = cls(e.errno, e.strerror, e.filename, winerror)
    elif e.filename is not None:
        new = cls(e.errno, e.strerror, e.filename)
    else:
        new = cls(e.errno, e.strerror)
    if winerror is None and e.errno is None:
        new = cls(*e.args)
    return new
