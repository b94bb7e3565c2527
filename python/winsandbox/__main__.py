"""``python -m winsandbox run [OPTIONS] -- PROGRAM [ARGS...]``: the same CLI
as the ``winsandbox`` executable (one implementation, in the native module)."""

from __future__ import annotations

import sys

from . import _winsandbox


def main(argv: list[str] | None = None) -> int:
    sys.stdout.flush()
    return _winsandbox.cli_main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
