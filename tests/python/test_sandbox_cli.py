"""The long-lived Sandbox and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import winsandbox
from conftest import PID, PY, WINE, alive, gone_soon, py
from winsandbox import Limits, Sandbox

KILLED_CODE = 0xE0575342  # "WSBK": the exit code of a process the sandbox ends on Windows


def _wait_for(path: Path, lines: int) -> list[str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if path.exists():
            got = path.read_text().split()
            if len(got) >= lines:
                return got
        time.sleep(0.05)
    raise AssertionError(f"{path} never had {lines} lines")


def test_sandbox_sees_its_processes_and_terminates_them(tmp_path: Path) -> None:
    with Sandbox(Limits(memory="512M")) as sb:
        outs = [tmp_path / f"{i}.txt" for i in range(2)]
        procs = [
            sb.spawn(py(f"import os, sys, time; print({PID}, flush=True); time.sleep(60)"), stdout=o) for o in outs
        ]
        pids = [int(_wait_for(o, 1)[0]) for o in outs]
        assert sorted(pids) == sorted(p.pid for p in procs)
        assert set(pids) <= set(sb.process_ids())
        acc = sb.accounting()
        assert acc.active_processes >= 2
        assert procs[0].poll() is None and procs[0].returncode is None
        with pytest.raises(subprocess.TimeoutExpired):
            procs[0].wait(0.1)
        sb.terminate(3)
        codes = [p.wait(20) for p in procs]
        if winsandbox.BACKEND == "windows":
            assert codes == [3, 3]
        else:
            assert codes == [-9, -9]
        assert [p.returncode for p in procs] == codes and procs[0].poll() == codes[0]
    assert sb.closed
    with pytest.raises(RuntimeError, match="closed"):
        sb.process_ids()


def test_a_sandbox_process_is_killed_alone(tmp_path: Path) -> None:
    with Sandbox() as sb:
        outs = [tmp_path / f"{i}.txt" for i in range(2)]
        a, b = (sb.spawn(py(f"import os, sys, time; print({PID}, flush=True); time.sleep(60)"), stdout=o) for o in outs)
        for o in outs:
            _wait_for(o, 1)
        assert a.args[0] == b.args[0] and a.args[-1].endswith("time.sleep(60)")
        a.kill()
        code = a.wait(20)
        assert code == (KILLED_CODE if winsandbox.BACKEND == "windows" else -9), code
        assert b.poll() is None and alive(b.pid)  # the other process runs on
        a.kill()  # ended already: nothing happens, nothing is raised
        assert b.pid in sb.process_ids() and a.pid not in sb.process_ids()


def test_sandbox_reports_each_process(tmp_path: Path) -> None:
    hog = f"import os, sys, time; b = bytearray(64 << 20); print({PID}, flush=True); time.sleep(60)"
    idle = f"import os, sys, time; print({PID}, flush=True); time.sleep(60)"
    with Sandbox() as sb:
        outs = [tmp_path / "hog.txt", tmp_path / "idle.txt"]
        for code, out in zip([hog, idle], outs):
            sb.spawn(py(code), stdout=out)
        hog_pid, idle_pid = (int(_wait_for(o, 1)[0]) for o in outs)
        by_pid = {p.pid: p for p in sb.processes()}
        h, i = by_pid[hog_pid], by_pid[idle_pid]
        assert isinstance(h, winsandbox.ProcessInfo)
        assert h.private_memory >= 64 << 20 and h.working_set >= 64 << 20, h
        assert h.private_memory > i.private_memory, (h, i)
        for p in (h, i):
            assert "python" in p.name.lower(), p
            assert p.peak_working_set >= p.working_set and p.user_time >= 0 and p.kernel_time >= 0, p
            if not WINE:  # Wine answers GetProcessHandleCount for another process with 0
                assert p.handles >= 3, p
    with pytest.raises(RuntimeError, match="closed"):
        sb.processes()


def test_closing_the_sandbox_kills_everything(tmp_path: Path) -> None:
    out = tmp_path / "pid.txt"
    sb = Sandbox()
    sb.spawn(py(f"import os, sys, time; print({PID}, flush=True); time.sleep(60)"), stdout=out)
    pid = int(_wait_for(out, 1)[0])
    assert alive(pid)
    sb.close()
    sb.close()  # idempotent
    assert gone_soon(pid)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "winsandbox", *args], capture_output=True, text=True, timeout=120)


def test_cli_json() -> None:
    p = _cli("run", "--wall-time", "30", "--memory", "256M", "--json", "--", PY, "-c", "print('out')")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["verdict"] == "OK"
    assert d["stdout"].replace("\r\n", "\n") == "out\n"
    for key in (
        "verdict",
        "exit_code",
        "cpu_time",
        "wall_time",
        "peak_memory",
        "processes",
        "stdout",
        "stderr",
        "truncated",
    ):
        assert key in d


def test_cli_stdio_to_the_null_device() -> None:
    p = _cli("run", "--json", "--stdin", os.devnull, "--stdout", os.devnull, "--", PY, "-c", "print('out')")
    assert p.returncode == 0, p.stdout + p.stderr
    d = json.loads(p.stdout)
    assert d["verdict"] == "OK" and d["stdout"] == ""


def test_cli_verdicts_and_exit_status() -> None:
    p = _cli("run", "--wall-time", "0.5", "--json", "--", PY, "-c", "import time; time.sleep(30)")
    assert p.returncode == 1
    assert json.loads(p.stdout)["verdict"] == "WLE"
    p = _cli("run", "--", PY, "-c", "import sys; sys.exit(4)")
    assert p.returncode == 1
    assert "verdict: RE" in p.stderr


def test_cli_usage_errors_exit_2() -> None:
    for args, needle in [
        (("run", "--memory", "12Q", "--", PY), "memory"),
        (("run", "--processes"), "--processes needs a value"),
        (("run", "--bogus", PY), "--bogus"),
        (("launch",), "unknown command"),
    ]:
        p = _cli(*args)
        assert p.returncode == 2, args
        assert needle in p.stderr, p.stderr


def test_cli_missing_program_is_se() -> None:
    p = _cli("run", "--json", "--", "/no/such/program")
    assert p.returncode == 3
    assert json.loads(p.stdout)["verdict"] == "SE"


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_cli_signal_ends_the_run_and_its_tree_at_once(tmp_path: Path, sig: str) -> None:
    if winsandbox.BACKEND != "posix":
        pytest.skip("POSIX signals to the CLI process")
    import signal

    pids = tmp_path / "pids"
    grandchild = f"import os, sys, time; open({str(pids)!r}, 'w').write(str({PID}) + chr(10)); time.sleep(60)"
    code = f"""
        import subprocess, sys, time
        c = subprocess.Popen([sys.executable, "-c", {grandchild!r}])
        time.sleep(60)
    """
    p = subprocess.Popen(
        [sys.executable, "-m", "winsandbox", "run", "--", *py(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child = int(_wait_for(pids, 1)[0])
    t = time.monotonic()
    p.send_signal(getattr(signal, sig))
    _, err = p.communicate(timeout=10)
    assert time.monotonic() - t < 3, "the CLI did not end at once"
    assert p.returncode == 128 + getattr(signal, sig), (p.returncode, err)
    assert b"interrupted" in err and b"Traceback" not in err, err
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), "the grandchild survived"


def test_a_process_spawned_from_a_thread_that_ended_lives_on() -> None:
    with Sandbox() as sb:
        got: list[winsandbox.SandboxProcess] = []
        t = threading.Thread(target=lambda: got.append(sb.spawn(py("import time; time.sleep(30)"))))
        t.start()
        t.join()
        time.sleep(0.5)
        assert got[0].poll() is None, "the process died with the thread that started it"
        assert alive(got[0].pid)
    assert not alive(got[0].pid)


def test_closing_a_sandbox_leaves_no_zombie() -> None:
    if winsandbox.BACKEND != "posix":
        pytest.skip("zombies are a POSIX matter")
    sb = Sandbox()
    pids = [sb.spawn(py("import time; time.sleep(30)")).pid for _ in range(20)]  # dropped unwaited
    sb.close()
    left = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        left.append((pid, state))
    assert left == [], f"{len(left)} of 20 left: {left[:3]}"
