"""``python -m winsandbox run [OPTIONS] -- PROGRAM [ARGS...]``: the same CLI
as the ``winsandbox`` executable (one implementation, in the native module)."""

from __future__ import annotations

import sys

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
    sys.stdout.flush()
    return _winsandbox.cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
