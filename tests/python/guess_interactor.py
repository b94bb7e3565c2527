"""A testlib-style interactor for "guess the number", as judges write them:
``guess_interactor.py INPUT OUTPUT``. The secret (1..1000) is in INPUT; each
query ``? X`` on stdin gets ``<``, ``>`` or ``=`` (the secret against X) on
stdout; ``! X`` is the answer. It writes its reason to OUTPUT and exits 0
(right), 1 (wrong, or over 20 queries) or 2 (an unreadable line, or the end
of its input), testlib's codes."""

import sys


def main() -> None:
    with open(sys.argv[1]) as f:
        secret = int(f.read())

    def verdict(code: int, why: str) -> None:
        with open(sys.argv[2], "w") as f:
            f.write(why)
        sys.exit(code)

    queries = 0
    for line in sys.stdin:
        parts = line.split()
        if len(parts) != 2 or parts[0] not in "?!" or not parts[1].isdigit():
            verdict(2, "a line that is not a query or an answer")
        x = int(parts[1])
        if parts[0] == "!":
            verdict(0, "ok") if x == secret else verdict(1, "wrong answer")
        queries += 1
        if queries > 20:
            verdict(1, "too many queries")
        try:
            print("<" if secret < x else ">" if secret > x else "=", flush=True)
        except BrokenPipeError:
            verdict(2, "the solution stopped reading")
    verdict(2, "unexpected end of input")


main()
