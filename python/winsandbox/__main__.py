"""``python -m winsandbox run [OPTIONS] -- PROGRAM [ARGS...]``: the same CLI
as the ``winsandbox`` executable (one implementation, in the native module)."""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Optional

from . import _winsandbox


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    for i, a in enumerate(args, 1):
        try:
            a.encode("utf-8")
        except UnicodeEncodeError:
            # A byte the system could not decode (kept as a surrogate): the
            # native CLI takes text only. A usage error, as the CLI's own.
            print(f"winsandbox: argument {i} ({a!r}) is not valid UTF-8", file=sys.stderr)
            return 2
    got: list[int] = []

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        got.append(signum)
        raise KeyboardInterrupt

    # SIGTERM ends the run (and its tree) as Ctrl-C does; the status is then
    # 128 + the signal, as a shell reports it.
    old = signal.signal(signal.SIGTERM, stop)
    try:
        sys.stdout.flush()
        code = _winsandbox.cli_main(args)
    finally:
        signal.signal(signal.SIGTERM, old)
    return 128 + got[0] if got and code == 130 else code


if __name__ == "__main__":
    sys.exit(main())
