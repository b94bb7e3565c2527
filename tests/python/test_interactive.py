"""Interactive runs: a solution and a testlib-style interactor
(guess_interactor.py) joined by pipes, each in its own sandbox. Every way a
solution or the interactor misbehaves ends with the documented verdict,
soon, and nothing left running."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest

import winsandbox
from conftest import PY, gone_soon, py
from winsandbox import InteractiveOutcome, Limits, Verdict

INTERACTOR = str(Path(__file__).resolve().parent / "guess_interactor.py")

GUESS = """
import sys
lo, hi = 1, 1000
while True:
    mid = (lo + hi) // 2
    print("?", mid, flush=True)
    r = sys.stdin.readline().strip()
    if r == "=":
        print("!", mid OFFSET, flush=True)
        break
    lo, hi = (lo, mid - 1) if r == "<" else (mid + 1, hi)
"""
RIGHT = GUESS.replace("OFFSET", "")
WRONG = GUESS.replace("OFFSET", "+ 1")
SILENT = "import time; time.sleep(60)"
FLOOD = "while True: print('garbage ' * 1000)"
CRASH = "import ctypes; ctypes.string_at(0)"
NEVER_READS = "import time; print('? 500', flush=True); time.sleep(60)"


def judge(tmp_path: Path, solution: str, interactor: list[str] | None = None,
          wall: float = 3.0) -> tuple[InteractiveOutcome[str], str]:  # fmt: skip
    (tmp_path / "secret.txt").write_text("617\n")
    verdict = tmp_path / "verdict.txt"
    t = time.monotonic()
    x = winsandbox.run_interactive(
        py(solution),
        interactor or [PY, INTERACTOR, str(tmp_path / "secret.txt"), str(verdict)],
        limits=Limits(wall_time=wall),
        interactor_limits=Limits(wall_time=15),
        text=True,
    )
    assert time.monotonic() - t < 15, x
    for o in (x.solution, x.interactor):
        assert gone_soon(o.pid), o
    return x, verdict.read_text() if verdict.exists() else ""


def test_a_right_solution_is_accepted(tmp_path: Path) -> None:
    x, why = judge(tmp_path, RIGHT)
    assert (x.verdict, why) == (Verdict.OK, "ok"), x
    assert x.ok and x.solution.verdict is Verdict.OK and x.interactor.exit_code == 0
    assert x.solution.stdout == "" and x.interactor.stdout == ""  # the pipes join the programs


def test_a_wrong_answer_is_wa(tmp_path: Path) -> None:
    x, why = judge(tmp_path, WRONG)
    assert (x.verdict, why) == (Verdict.WA, "wrong answer"), x


def test_a_silent_solution_ends_by_its_wall_limit(tmp_path: Path) -> None:
    x, _ = judge(tmp_path, SILENT)
    assert (x.verdict, x.solution.limit) == (Verdict.WLE, "wall_time"), x
    assert x.interactor.verdict is Verdict.SE, "ended with the solution"
    assert x.solution.cpu_time < 1.0, "waiting is not CPU"


def test_a_solution_that_never_reads_ends_by_its_wall_limit(tmp_path: Path) -> None:
    x, _ = judge(tmp_path, NEVER_READS)
    assert x.verdict is Verdict.WLE, x


def test_a_flooding_solution_is_pe(tmp_path: Path) -> None:
    x, why = judge(tmp_path, FLOOD)
    assert (x.verdict, why) == (Verdict.PE, "a line that is not a query or an answer"), x


def test_a_crashing_solution_is_judged_as_the_interactor_saw_it(tmp_path: Path) -> None:
    x, why = judge(tmp_path, CRASH)
    assert (x.verdict, why) == (Verdict.PE, "unexpected end of input"), x
    assert x.solution.verdict is Verdict.RE, x


def test_a_crash_after_an_accepted_interaction_is_re(tmp_path: Path) -> None:
    x, why = judge(tmp_path, RIGHT + "\nimport sys; sys.exit(3)")
    assert (x.verdict, why) == (Verdict.RE, "ok"), x


def test_a_crashing_interactor_is_jf_and_ends_the_solution(tmp_path: Path) -> None:
    x, _ = judge(tmp_path, SILENT, interactor=py(CRASH), wall=10)
    assert x.verdict is Verdict.JF, x
    assert x.solution.verdict is Verdict.SE and x.solution.wall_time < 8, x


def test_codes_can_be_mapped_and_bad_ones_are_refused(tmp_path: Path) -> None:
    x = winsandbox.run_interactive(py("pass"), py("import sys; sys.exit(7)"), codes={7: "OK"},
                                   limits=Limits(wall_time=5))  # fmt: skip
    assert x.verdict is Verdict.OK, x
    with pytest.raises(ValueError, match="is not a valid Verdict"):
        winsandbox.run_interactive(py("pass"), py("pass"), codes={0: "GOOD"})
    with pytest.raises(TypeError, match="interactor_limits"):
        winsandbox.run_interactive(py("pass"), py("pass"), interactor_limits=5)  # type: ignore[arg-type]


def test_run_interactive_async_and_its_cancellation(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("617\n")
    argv = [PY, INTERACTOR, str(tmp_path / "secret.txt"), str(tmp_path / "verdict.txt")]

    async def main() -> tuple[list[InteractiveOutcome[bytes]], InteractiveOutcome[bytes] | None]:
        outs = await asyncio.gather(*(winsandbox.run_interactive_async(py(RIGHT), argv) for _ in range(3)))
        task = asyncio.create_task(winsandbox.run_interactive_async(py(SILENT), py(SILENT)))
        await asyncio.sleep(1.0)
        task.cancel()
        try:
            return list(outs), await task
        except asyncio.CancelledError:
            return list(outs), None

    t = time.monotonic()
    outs, cancelled = asyncio.run(main())
    assert [o.verdict for o in outs] == [Verdict.OK] * 3, outs
    assert cancelled is None
    assert time.monotonic() - t < 20


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "winsandbox", *args], capture_output=True, text=True, timeout=60, check=False)


def test_the_cli_runs_an_interactive_problem(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("617\n")
    judge = ["--interactor", PY, "--interactor-arg", INTERACTOR, "--interactor-arg", str(tmp_path / "secret.txt"),
             "--interactor-arg", str(tmp_path / "verdict.txt"), "--interactor-wall-time", "15"]  # fmt: skip
    p = _cli("interactive", "--json", "--wall-time", "5", *judge, "--", *py(RIGHT))
    assert p.returncode == 0, p.stdout + p.stderr
    d = json.loads(p.stdout)
    assert (d["verdict"], d["solution"]["verdict"], d["interactor"]["exit_code"]) == ("OK", "OK", 0), d
    p = _cli("interactive", "--wall-time", "5", *judge, "--", *py(WRONG))
    assert p.returncode == 1 and "--- verdict: WA" in p.stderr, p.stderr
    crashing = ["--interactor", PY, "--interactor-arg", "-c", "--interactor-arg", CRASH]
    p = _cli("interactive", "--json", "--wall-time", "5", *crashing, "--", *py(SILENT))
    assert p.returncode == 3, p.stdout + p.stderr  # JF: the judge failed
    assert json.loads(p.stdout)["verdict"] == "JF"
    p = _cli("interactive", "--", *py(RIGHT))
    assert p.returncode == 2 and "--interactor" in p.stderr, p.stderr
