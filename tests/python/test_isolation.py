"""Isolation levels through the Python API: the grading case, the
fail-closed rule, the arguments. Linux: enforced for real. Windows under
Wine: every level must give SE with nothing started."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import winsandbox
from winsandbox import Isolation, Job, Verdict

WINE = winsandbox.BACKEND == "windows" and winsandbox._winsandbox.wine_version() is not None
LINUX = sys.platform.startswith("linux")
REAL_WINDOWS = winsandbox.BACKEND == "windows" and not WINE
"""Real Windows runs strict in an AppContainer: tests/isolation.rs covers it
with the probe (a Python there would need its whole folder granted)."""
PY = sys.executable


@pytest.mark.parametrize("level", ["strict", "restricted"])
def test_the_answer_beside_the_working_directory_does_not_leak(tmp_path: Path, level: Isolation) -> None:
    if not LINUX:
        pytest.skip("isolation is enforced by the Linux backend here (Windows: refused under Wine)")
    answers = tmp_path / "answers"
    answers.mkdir()
    (answers / "01.ans").write_text("42\n")
    work = tmp_path / "work"
    work.mkdir()
    cheat = (
        "import sys\ntry:\n print(open('../answers/01.ans').read())\nexcept OSError as e:\n print('denied', e.errno)\n"
    )
    leak = winsandbox.run([PY, "-c", cheat], cwd=work, text=True)
    assert leak.stdout.strip() == "42"  # the hole, unisolated
    o = winsandbox.run([PY, "-c", cheat], cwd=work, text=True, isolation=level)
    assert o.verdict is Verdict.OK, o
    assert o.stdout.startswith("denied 2"), o.stdout
    assert o.isolation == level
    assert o.to_dict()["isolation"] == level


def test_a_file_problem_works_in_a_fresh_directory() -> None:
    if not LINUX:
        pytest.skip("isolation is enforced by the Linux backend here")
    prog = "import os; open('output.txt','w').write('5'); print(open('output.txt').read(), os.getcwd())"
    o = winsandbox.run([PY, "-c", prog], isolation="strict", text=True)
    assert o.verdict is Verdict.OK, o
    five, made = o.stdout.split()
    assert five == "5" and o.workdir is None
    assert not os.path.exists(made), "the directory made for the run is removed"
    kept = winsandbox.run([PY, "-c", prog], isolation="strict", text=True, keep_workdir=True)
    assert kept.verdict is Verdict.OK, kept
    assert kept.workdir == kept.stdout.split()[1] != made
    try:
        assert Path(kept.workdir, "output.txt").read_text() == "5"
        assert kept.to_dict()["workdir"] == kept.workdir
    finally:
        import shutil

        shutil.rmtree(kept.workdir)


def test_restricted_keeps_the_network_strict_does_not() -> None:
    if not LINUX:
        pytest.skip("isolation is enforced by the Linux backend here")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        prog = f"import socket\ntry:\n socket.create_connection(('127.0.0.1',{port}),2); print('connected')\nexcept OSError: print('refused')"
        strict = winsandbox.run([PY, "-c", prog], isolation="strict", text=True)
        restricted = winsandbox.run([PY, "-c", prog], isolation="restricted", text=True)
    assert strict.stdout.strip() == "refused", strict
    assert restricted.stdout.strip() == "connected", restricted


def test_levels_refuse_under_wine_with_nothing_started(tmp_path: Path) -> None:
    if not WINE:
        pytest.skip("Wine only (it accepts the mechanisms and does not enforce them)")
    marker = tmp_path / "started"
    for level in ("strict", "restricted"):
        o = winsandbox.run([PY, "-c", f"open({str(marker)!r},'w')"], isolation=level)
        assert o.verdict is Verdict.SE, o
        assert o.isolation == level
        assert o.error is not None and "not enforced on this system" in o.error
        assert not marker.exists()
        with pytest.raises(winsandbox.IsolationError) as e:
            _start_only(level, marker)
        assert isinstance(e.value, winsandbox.SandboxError)
    o = winsandbox.run([PY, "-c", f"open({str(marker)!r},'w')"])
    assert o.verdict is Verdict.OK and marker.exists()  # the same program does run unisolated


def test_the_cli_keeps_the_working_directory_when_asked() -> None:
    if not LINUX:
        pytest.skip("isolation is enforced by the Linux backend here")
    import json
    import shutil
    import subprocess

    write = "open('output.txt', 'w').write('done')"
    r = subprocess.run(
        [PY, "-m", "winsandbox", "run", "--json", "--isolation", "strict", "--keep-workdir", "--", PY, "-c", write],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    d = json.loads(r.stdout)
    assert (r.returncode, d["verdict"]) == (0, "OK"), r
    try:
        assert Path(d["workdir"], "output.txt").read_text() == "done"
    finally:
        shutil.rmtree(d["workdir"])
    plain = subprocess.run([PY, "-m", "winsandbox", "run", "--json", "--", PY, "-c", "pass"], capture_output=True)
    assert json.loads(plain.stdout)["workdir"] is None
    bad = subprocess.run([PY, "-m", "winsandbox", "run", "--keep-workdir", "--", PY, "-c", "pass"], capture_output=True)
    assert bad.returncode == 2 and b"keep_workdir" in bad.stderr, bad
    grant = subprocess.run([PY, "-m", "winsandbox", "run", "--readable", "/", "--", PY], capture_output=True)
    assert grant.returncode == 2 and b"readable" in grant.stderr, grant  # a usage error, found before any start


def _start_only(level: str, marker: Path) -> None:
    from winsandbox import _run

    _run._start([PY, "-c", f"open({str(marker)!r},'w')"], isolation=level)  # type: ignore[arg-type]


def test_run_many_takes_isolation_per_job(tmp_path: Path) -> None:
    if REAL_WINDOWS:
        pytest.skip("real Windows: tests/isolation.rs covers strict")
    jobs = [Job(args=[PY, "-c", "print(1)"], isolation="strict"), Job(args=[PY, "-c", "print(2)"])]
    kept = Job(args=[PY, "-c", "print(3)"], isolation="strict", keep_workdir=True)
    assert Job.from_dict(kept.to_dict()) == Job(args=(PY, "-c", "print(3)"), isolation="strict", keep_workdir=True)
    out = list(winsandbox.run_many(jobs, text=True))
    assert out[0].isolation == "strict" and out[1].isolation == "none"
    assert out[1].verdict is Verdict.OK
    assert out[0].verdict is (Verdict.SE if WINE else Verdict.OK), out[0]
    assert Job.from_dict(jobs[0].to_dict()) == Job(args=(PY, "-c", "print(1)"), isolation="strict")


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"isolation": "lax"}, ValueError, "isolation"),
        ({"isolation": None}, ValueError, "isolation"),
        ({"readable": "/tmp"}, TypeError, "readable"),
        ({"writable": [5]}, TypeError, "writable"),
        ({"readable": ["/no/such/wsb"]}, FileNotFoundError, "readable"),
        ({"readable": [os.getcwd()]}, ValueError, "readable"),
        ({"keep_workdir": 1}, TypeError, "keep_workdir"),
        ({"keep_workdir": True}, ValueError, "keep_workdir"),
        ({"keep_workdir": True, "isolation": "strict", "cwd": os.getcwd()}, ValueError, "keep_workdir"),
    ],
)
def test_bad_isolation_arguments_are_named(kwargs: dict[str, object], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        winsandbox.run([PY, "-c", "pass"], **kwargs)  # type: ignore[call-overload]


def test_grants_of_the_systems_files_are_refused_naming_the_argument(tmp_path: Path) -> None:
    """Before anything starts or any permission changes, on every backend
    (under Wine too, ahead of refusing the level itself)."""
    system = Path(os.environ["SystemRoot"]) if sys.platform == "win32" else Path("/usr")
    marker = tmp_path / "started"
    program = [PY, "-c", f"open({str(marker)!r},'w')"]
    for level in ("strict", "restricted"):
        with pytest.raises(ValueError, match="writable"):
            winsandbox.run(program, isolation=level, writable=[system / "lib" if LINUX else system / "Temp"])
        with pytest.raises(ValueError, match="cwd"):
            winsandbox.run(program, isolation=level, cwd=system)
    assert not marker.exists()


def test_the_cli_names_the_level(tmp_path: Path) -> None:
    if REAL_WINDOWS:
        pytest.skip("real Windows: tests/isolation.rs covers strict")
    import json
    import subprocess

    r = subprocess.run(
        [PY, "-m", "winsandbox", "run", "--json", "--isolation", "strict", "--", PY, "-c", "print(7)"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    d = json.loads(r.stdout)
    assert d["isolation"] == "strict"
    if WINE:
        assert (r.returncode, d["verdict"]) == (3, "SE"), r
    elif LINUX:
        assert (r.returncode, d["verdict"], d["stdout"]) == (0, "OK", "7\n"), r
    bad = subprocess.run(
        [PY, "-m", "winsandbox", "run", "--isolation", "lax", "--", PY], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "isolation" in bad.stderr


def test_an_isolated_solution_talks_to_its_interactor_and_cannot_read_the_secret(tmp_path: Path) -> None:
    interactor = str(Path(__file__).resolve().parent / "guess_interactor.py")
    (tmp_path / "secret.txt").write_text("617\n")
    verdict = tmp_path / "verdict.txt"
    # A solution that reads the interactor's secret instead of guessing.
    cheat = (
        "import sys\n"
        f"try: n = int(open({str(tmp_path / 'secret.txt')!r}).read())\n"
        "except OSError: n = 1\n"
        "print('!', n, flush=True)\n"
    )
    x = winsandbox.run_interactive(
        [PY, "-c", cheat] if not WINE else [PY, "-c", "pass"],
        [PY, interactor, str(tmp_path / "secret.txt"), str(verdict)],
        limits=winsandbox.Limits(wall_time=5),
        interactor_limits=winsandbox.Limits(wall_time=15),
        text=True,
        isolation="none",
    )
    if not WINE:
        assert x.verdict is Verdict.OK, x  # the hole, unisolated
    if LINUX:
        x = winsandbox.run_interactive(
            [PY, "-c", cheat],
            [PY, interactor, str(tmp_path / "secret.txt"), str(verdict)],
            limits=winsandbox.Limits(wall_time=5),
            interactor_limits=winsandbox.Limits(wall_time=15),
            text=True,
            isolation="strict",
        )
        assert x.verdict is Verdict.WA, x
        assert x.solution.isolation == "strict" and x.interactor.isolation == "none"
    if WINE:
        with pytest.raises(winsandbox.IsolationError):
            winsandbox.run_interactive([PY, "-c", "pass"], [PY, "-c", "pass"], isolation="strict")


def test_a_sandbox_isolates_each_process_it_starts(tmp_path: Path) -> None:
    if REAL_WINDOWS:
        pytest.skip("real Windows: tests/isolation.rs covers strict")
    secret = tmp_path / "secret"
    secret.write_text("s3cret")
    os.chmod(tmp_path, 0o755)
    os.chmod(secret, 0o644)
    work = tmp_path / "work"
    work.mkdir()
    if WINE:
        with pytest.raises(winsandbox.IsolationError):
            winsandbox.Sandbox(isolation="strict")
        return
    if not LINUX:
        pytest.skip("isolation is enforced by the Linux backend here")
    prog = f"import sys\ntry: open({str(secret)!r}).read(); sys.exit(10)\nexcept OSError: sys.exit(20)"
    with winsandbox.Sandbox(isolation="strict") as sb:
        assert sb.isolation == "strict"
        p = sb.spawn([PY, "-c", prog], cwd=work)
        assert p.wait(30) == 20  # the secret is not there to read
        q = sb.spawn([PY, "-c", "import time; time.sleep(60)"], cwd=work)
        assert q.poll() is None
    assert q.wait(5) < 0  # killed with the sandbox
    with winsandbox.Sandbox() as sb:
        assert sb.spawn([PY, "-c", prog], cwd=work).wait(30) == 10  # the hole, unisolated


@pytest.mark.parametrize("level", ["strict", "restricted"])
def test_a_level_whose_canary_cannot_run_is_refused(tmp_path: Path, level: str) -> None:
    """A level is proved by its canary before any program runs under it; a
    canary that cannot run proves nothing, so the level is refused and the
    program never starts. Provoked without weakening anything: with TMPDIR
    inside /usr (which every view shows, read-only) the canary's working
    directory would be a system folder, which no isolated program may write."""
    if not LINUX:
        pytest.skip("the canary is the Linux backend's")
    import json
    import subprocess
    import tempfile

    try:
        tmp = tempfile.mkdtemp(prefix="winsandbox-canary-test-", dir="/usr/local")
    except OSError as e:
        pytest.skip(f"/usr/local is not writable here: {e}")
    try:
        os.chmod(tmp, 0o755)
        ran = tmp_path / "ran"
        r = subprocess.run(
            [PY, "-m", "winsandbox", "run", "--json", "--isolation", level, "--writable", str(tmp_path),
             "--", PY, "-c", f"open({str(ran)!r}, 'w')"],
            capture_output=True, text=True, timeout=120, env={**os.environ, "TMPDIR": tmp},
        )  # fmt: skip
        d = json.loads(r.stdout)
        assert (r.returncode, d["verdict"], d["isolation"]) == (3, "SE", level), r
        assert "its canary could not run" in d["error"] and "system's files" in d["error"], d["error"]
        assert not ran.exists()
        assert os.listdir(tmp) == [], "the canary's bait and folders are removed"
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
