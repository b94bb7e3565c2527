"""Put on the path only where this Python has no ``_ssl`` (the Windows CPython
of ``../shared/wincpython``, built without OpenSSL, that runs the tests under
Wine): Celery's ``amqp`` and redis-py name ``ssl`` classes when they are
imported (``from ssl import SSLError``, ``ssl.VerifyMode`` in annotations),
even for a ``redis://`` broker that never uses TLS. This lets them be
imported; every name is a class that cannot be used: any TLS fails, saying
why."""

from __future__ import annotations

from typing import Any, NoReturn


class SSLError(OSError):
    pass


class _NoTLS:
    def __new__(cls, *args: Any, **kwargs: Any) -> NoReturn:
        raise OSError(f"ssl.{cls.__name__}: this Python was built without OpenSSL, so it has no TLS")


def __getattr__(name: str) -> type:
    if name.startswith("__"):
        raise AttributeError(name)
    return type(name, (_NoTLS,), {})
