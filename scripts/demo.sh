#!/usr/bin/env bash
# The demo: winsandbox's Windows backend at work, under Wine on this Linux
# machine (installs what it needs first; a second run reuses the build).
#  1. a child tree started in a job, then killed by closing the job;
#  2. misbehaving programs run through the `winsandbox` CLI, with their verdicts.
# `--linux` runs the same on the POSIX fallback backend instead. Each program
# run is bounded (120 s), so a hung Wine session cannot hang the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/winenv.sh

if [ "${1:-}" = --linux ]; then
    cargo build -q --bins --examples
    BIN=target/debug
    run() { timeout -k 5 120 "$@"; }
    EXE=""
else
    winenv_install
    winenv_prefix
    winenv_server  # its output to target/wineserver.log, not to this screen
    echo "building for x86_64-pc-windows-gnu (the first time builds std too: a few minutes)..." >&2
    wincargo build -q --bins --examples
    BIN=target/win/x86_64-pc-windows-gnu/debug
    run() { timeout -k 5 120 setarch -R "$WSB_WINE" "$@"; }  # wsbwine, bounded
    EXE=.exe
fi
CLI=$BIN/winsandbox$EXE
PROBE=$BIN/wsb-probe$EXE
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

echo "== 1. a process tree in a job, killed by closing the job"
run "$BIN/examples/demo$EXE"

echo
echo "== 2. misbehaving programs through the CLI (winsandbox run --json ...)"
VERDICT_PY=$(cat <<'PY'
import json, sys
label, raw = sys.argv[1], sys.stdin.read()
try:
    o = json.loads(raw)
except ValueError:
    print(f"  {label:<44} (no JSON: {raw[:80]!r})")
    sys.exit()
extra = f" limit={o['limit']}" if o.get("limit") else ""
status = f" {o['status']}" if o.get("status") else ""
print(f"  {label:<44} {o['verdict']:<3} by {o.get('mechanism') or '-':<7}{extra}{status}  "
      f"exit={o['exit_code']} wall={o['wall_time']:.2f}s peak={o['peak_memory'] // 1024} KiB procs={o['processes']}")
PY
)
verdict() { # label, CLI arguments...
    local label=$1
    shift
    local json crashes
    crashes=$(server_crashes)
    # Into a file, not a pipe: after a Wine server crash, orphaned Wine
    # processes keep the CLI's Unix descriptors open, and a pipe would wait
    # for them without end (`run` bounds the CLI itself).
    run "$CLI" run --json "$@" >"$OUT" 2>/dev/null || true
    json=$(tr -d '\r' <"$OUT")
    if [ -z "$json" ] && [ "$(server_crashes)" != "$crashes" ]; then
        # Measured: 2 of 5 demo runs, in the fork bomb (the tests skip it under Wine).
        printf '  %-44s (no verdict: Wine 8'"'"'s server crashed, its bug when a job is ended while a child is being created; run it again)\n' "$label"
        winenv_kill "$WINEPREFIX" # what the crash left: nothing stays running
        return
    fi
    printf %s "$json" | python3 -c "$VERDICT_PY" "$label"
}
# How many times Wine's server has crashed so far (0 off Wine).
server_crashes() { grep -c "wineserver crashed" target/wineserver.log 2>/dev/null || true; }
verdict "prints hello" -- "$PROBE" hello
verdict "exits with 3" -- "$PROBE" exit 3
verdict "dereferences NULL" -- "$PROBE" crash
verdict "sleeps 30 s, --wall-time 1" --wall-time 1 -- "$PROBE" sleep 30
verdict "touches 512 MiB, --memory 64M" --memory 64M -- "$PROBE" alloc 512 10
verdict "fork bomb, --processes 4" --processes 4 --wall-time 20 -- "$PROBE" fork-bomb
verdict "writes 100 MB, --output-limit 1M" --output-limit 1M -- "$PROBE" flood 100000000
verdict "leaves a grandchild behind" -- "$PROBE" grandchild 60
echo
echo "== 3. isolation levels: enforced (Linux), or refused with nothing started (Wine enforces none)"
ISO_PY=$(cat <<'PY'
import json, sys
label, raw = sys.argv[1], sys.stdin.read()
o = json.loads(raw)
why = (o.get("error") or "").split(": ", 1)[-1][:100]
print(f"  {label:<44} {o['verdict']:<3} isolation={o['isolation']}  {why}")
PY
)
for level in strict restricted; do
    run "$CLI" run --json --isolation "$level" -- "$PROBE" hello >"$OUT" 2>/dev/null || true
    tr -d '\r' <"$OUT" | python3 -c "$ISO_PY" "--isolation $level, prints hello" || true
done
echo
echo "bad arguments are a usage error (exit status 2):"
run "$CLI" run --memory 12Q -- "$PROBE" hello 2>&1 | head -1 || true
[ "${1:-}" = --linux ] || winenv_stop
