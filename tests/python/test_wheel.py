"""The built wheels: tags, and a Windows .pyd that imports nothing but
system DLLs and python3.dll (the stable ABI). Runs where the wheels were
built (WINSANDBOX_WHEEL_DIR); skipped elsewhere."""

from __future__ import annotations

import os
import struct
import sys
import zipfile
from pathlib import Path

import pytest

import winsandbox

WHEELS = Path(os.environ.get("WINSANDBOX_WHEEL_DIR", "")) if os.environ.get("WINSANDBOX_WHEEL_DIR") else None

SYSTEM_DLLS = {
    "kernel32.dll",
    "ntdll.dll",
    "advapi32.dll",
    "bcrypt.dll",
    "bcryptprimitives.dll",
    "userenv.dll",
    "ws2_32.dll",
    "msvcrt.dll",
    "ucrtbase.dll",
    "user32.dll",
    "ole32.dll",
    "oleaut32.dll",
    "shell32.dll",
    "secur32.dll",
    "psapi.dll",
    "synchronization.dll",
    "python3.dll",
}


def pe_imports(data: bytes) -> list[str]:
    """DLL names in a PE32+ file's import directory."""
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    assert data[pe : pe + 4] == b"PE\0\0", "not a PE file"
    nsec = struct.unpack_from("<H", data, pe + 6)[0]
    opt_size = struct.unpack_from("<H", data, pe + 20)[0]
    opt = pe + 24
    assert struct.unpack_from("<H", data, opt)[0] == 0x20B, "not PE32+"
    import_rva = struct.unpack_from("<I", data, opt + 120)[0]
    sections = [struct.unpack_from("<8sIIII", data, opt + opt_size + 40 * i) for i in range(nsec)]

    def off(rva: int) -> int:
        for _name, vsize, vaddr, rawsize, rawptr in sections:
            if vaddr <= rva < vaddr + max(vsize, rawsize):
                return int(rawptr + rva - vaddr)
        raise ValueError(f"RVA {rva:#x} in no section")

    names: list[str] = []
    d = off(import_rva)
    while True:
        entry = struct.unpack_from("<5I", data, d)
        if entry == (0, 0, 0, 0, 0):
            return names
        n = off(entry[3])
        names.append(data[n : data.index(b"\0", n)].decode())
        d += 20


def _wheel(pattern: str) -> Path:
    if WHEELS is None:
        pytest.skip("WINSANDBOX_WHEEL_DIR not set (wheels are checked where they are built)")
    found = sorted(WHEELS.rglob(pattern))
    if not found:
        pytest.skip(f"no {pattern} under {WHEELS}")
    return found[-1]


def test_windows_wheel_is_abi3_and_imports_only_system_dlls() -> None:
    whl = _wheel("*-cp39-abi3-win_amd64.whl")
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        pyd = [n for n in names if n.endswith(".pyd")]
        assert pyd == ["winsandbox/_winsandbox.pyd"], names
        wheel_meta = next(n for n in names if n.endswith(".dist-info/WHEEL"))
        assert "Tag: cp39-abi3-win_amd64" in z.read(wheel_meta).decode()
        for f in ("winsandbox/py.typed", "winsandbox/_winsandbox.pyi", "winsandbox/__init__.py"):
            assert f in names
        imports = [d.lower() for d in pe_imports(z.read(pyd[0]))]
    assert "python3.dll" in imports
    assert not [d for d in imports if d.startswith("python3") and d != "python3.dll"], imports
    unexpected = [d for d in imports if d not in SYSTEM_DLLS and not d.startswith("api-ms-win-")]
    assert unexpected == [], f"non-system DLLs: {unexpected}"


def test_linux_wheel_is_abi3() -> None:
    whl = _wheel("*-cp39-abi3-*linux*.whl")
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        assert any(n.startswith("winsandbox/_winsandbox") and n.endswith(".so") for n in names)
        assert "winsandbox/py.typed" in names


def test_installed_from_the_wheel_not_the_tree() -> None:
    if os.environ.get("WINSANDBOX_FROM_WHEEL") != "1":
        pytest.skip("not run from an installed wheel")
    assert "site-packages" in winsandbox.__file__, winsandbox.__file__
    assert sys.prefix != sys.base_prefix or os.name == "nt"
