"""Runs a command as uid 1000 where the system gives no user namespace
(Linux, as root): ``python without_namespaces.py CMD...``.

The refusal is made inside a user namespace of its own (uid 0 and 1000
mapped to themselves), whose ``user.max_user_namespaces`` is set to 0:
the machine's own setting is not touched. For the isolation tests: a level
the system refuses must fail closed."""

from __future__ import annotations

import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000


def main() -> int:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWUSER) != 0:
            os._exit(90)
        os.read(r, 1)  # returns at the end of the pipe: the maps are written
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
        os.setgroups([])
        os.setresgid(1000, 1000, 1000)
        os.setresuid(1000, 1000, 1000)
        os.execv(sys.argv[1], sys.argv[1:])
    os.close(r)
    import time

    for _ in range(100):  # until the child is in its namespace
        if os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user"):
            break
        time.sleep(0.01)
    for name, ids in (("uid_map", "0 0 1\n1000 1000 1\n"), ("setgroups", None), ("gid_map", "0 0 1\n1000 1000 1\n")):
        if ids is not None:
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(ids)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
