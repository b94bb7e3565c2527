"""Interactive runs: a solution and an interactor talking through pipes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Optional, TypedDict, TypeVar, Union

from . import _winsandbox
from ._command import Isolation, StrPath, _argv, _confinement, _cwd, _env_changes, _output
from ._limits import Limits, _limits_arg
from ._outcome import Outcome, Verdict, _outcome
from ._run import _end_of, _wait

if TYPE_CHECKING:
    from typing_extensions import Unpack

T = TypeVar("T", str, bytes)

TESTLIB_CODES: Mapping[int, Verdict] = {0: Verdict.OK, 1: Verdict.WA, 2: Verdict.PE, 3: Verdict.JF}
"""How an interactor's exit code reads by default (testlib's convention)."""


@dataclass(frozen=True)
class InteractiveOutcome(Generic[T]):
    """What an interactive run gave: its verdict and both outcomes.

    ``verdict``, by these rules in order: a limit the solution crossed
    (TLE, WLE, MLE, OLE, PLE); ``JF`` when the interactor did not end by
    itself with an exit code ``codes`` maps (it crossed a limit, crashed, or
    was ended), or its code says JF; where the interactor accepted, ``WLE``
    for a solution that did not end within 2 s of it, the solution's ``RE``
    (or ``SE``) where it failed, else ``OK``; otherwise the interactor's
    verdict (a solution that crashed is judged as the interactor saw it:
    with testlib, ``PE``, unexpected end of file)."""

    verdict: Verdict
    solution: Outcome[T]
    interactor: Outcome[T]

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK


class InteractiveOptions(TypedDict, total=False):
    """The keyword arguments of `run_interactive` and its async twin
    besides ``text`` (for typing a wrapper's ``**options``)."""

    limits: Optional[Limits]
    interactor_limits: Optional[Limits]
    cwd: Optional[StrPath]
    interactor_cwd: Optional[StrPath]
    env: Optional[Mapping[str, str]]
    extra_env: Optional[Mapping[str, Optional[str]]]
    stderr: Union[int, StrPath, None]
    interactor_stderr: Union[int, StrPath, None]
    codes: Optional[Mapping[int, Union[Verdict, str]]]
    isolation: Isolation
    """The solution's isolation level (`run`'s); ``readable``/``writable`` are its grants."""
    readable: Optional[Sequence[StrPath]]
    writable: Optional[Sequence[StrPath]]
    interactor_isolation: Isolation


def _start(
    solution: Sequence[StrPath], interactor: Sequence[StrPath], **o: Unpack[InteractiveOptions]
) -> _winsandbox.Interaction:
    limits = _limits_arg("limits", o.get("limits"))
    interactor_limits = _limits_arg("interactor_limits", o.get("interactor_limits"))
    codes = o.get("codes")
    table = TESTLIB_CODES if codes is None else codes
    if not isinstance(table, Mapping):
        raise TypeError(f"codes: expected a mapping of exit codes to verdicts, got {table!r}")
    pairs: list[tuple[int, str]] = []
    for code, v in table.items():
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(f"codes: exit codes must be int, got {code!r}")
        pairs.append((code, Verdict(v).value))
    changes, inherit = _env_changes(o.get("env"), o.get("extra_env"))
    return _winsandbox.start_interactive(
        _argv(solution),
        _argv(interactor),
        cwd=_cwd(o.get("cwd")),
        interactor_cwd=_cwd(o.get("interactor_cwd")),
        env=changes,
        env_inherit=inherit,
        stderr=_output("stderr", o.get("stderr")),
        interactor_stderr=_output("interactor_stderr", o.get("interactor_stderr")),
        limits=limits,
        interactor_limits=interactor_limits,
        codes=pairs,
        isolation=_confinement(o.get("isolation", "none"), o.get("readable"), o.get("writable")),
        interactor_isolation=_confinement(o.get("interactor_isolation", "none")),
    )


def _finish(r: _winsandbox.Interaction, text: bool) -> InteractiveOutcome[Any]:
    verdict, s, i = _wait(r)
    return InteractiveOutcome(Verdict(verdict), _outcome(s, text, None, None), _outcome(i, text, None, None))


def run_interactive(
    solution: Sequence[StrPath],
    interactor: Sequence[StrPath],
    *,
    text: bool = False,
    **options: Unpack[InteractiveOptions],
) -> InteractiveOutcome[Any]:
    """Runs ``solution`` and ``interactor``, each in its own sandbox with its
    own ``limits``/``interactor_limits`` and ``cwd``/``interactor_cwd``, the
    solution's stdout piped to the interactor's stdin and the interactor's
    stdout to the solution's stdin (pipes between the two programs); both
    stderrs are captured (or ``DEVNULL``, or a path: ``stderr``,
    ``interactor_stderr``); ``env``/``extra_env`` for both. ``codes`` maps
    the interactor's exit codes to verdicts (default `TESTLIB_CODES`). When
    either ends badly the other is ended; when either ends by itself the
    other has 2 s to end. Give the solution a ``wall_time``: an interaction
    in which both wait for the other ends only by a wall limit.
    ``isolation`` (with ``readable``/``writable``) isolates the solution,
    ``interactor_isolation`` the interactor, as `run` does; a level this
    system does not enforce raises `IsolationError`, nothing started.
    Returns an `InteractiveOutcome` (its rules there)."""
    return _finish(_start(solution, interactor, **options), text)


async def run_interactive_async(
    solution: Sequence[StrPath],
    interactor: Sequence[StrPath],
    *,
    text: bool = False,
    **options: Unpack[InteractiveOptions],
) -> InteractiveOutcome[Any]:
    """`run_interactive` for asyncio: no thread waits for it (the driver
    thread tells the loop once both have ended). Cancelling the task ends
    both process trees."""
    r = _start(solution, interactor, **options)
    await _end_of(r)
    return _finish(r, text)
