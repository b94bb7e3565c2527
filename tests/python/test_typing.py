"""Checked by mypy --strict: the overloads give str or bytes outcomes."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import winsandbox
from conftest import py

if sys.version_info >= (3, 11):
    from typing import assert_type
elif TYPE_CHECKING:
    from typing_extensions import assert_type
else:

    def assert_type(v: object, _t: object) -> object:
        return v


def test_overloads_on_text() -> None:
    b = winsandbox.run(py("print(1)"))
    assert_type(b, winsandbox.Outcome[bytes])
    assert_type(b.stdout, bytes)
    t = winsandbox.run(py("print(1)"), text=True)
    assert_type(t, winsandbox.Outcome[str])
    e = winsandbox.run(py("print(1)"), encoding="utf-8")
    assert_type(e, winsandbox.Outcome[str])
    assert isinstance(b.stdout, bytes) and isinstance(t.stdout, str) and isinstance(e.stdout, str)
    assert_type(b.verdict, winsandbox.Verdict)
    assert_type(winsandbox.Limits(memory="1M").memory, "int | None")


def test_async_overloads_on_text() -> None:
    import asyncio

    async def both() -> tuple[winsandbox.Outcome[bytes], winsandbox.Outcome[str]]:
        b = await winsandbox.run_async(py("print(1)"))
        t = await winsandbox.run_async(py("print(1)"), text=True, timeout=30)
        return b, t

    b, t = asyncio.run(both())
    assert_type(b.stdout, bytes)
    assert_type(t.stdout, str)
    assert isinstance(b.stdout, bytes) and isinstance(t.stdout, str)
