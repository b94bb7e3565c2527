#!/usr/bin/env bash
# Runs every suite of winsandbox on a Linux machine (Debian 12), installing
# what is missing first:
#   1. lint: cargo fmt, clippy -D warnings (Linux and Windows targets), ruff
#   2. Rust tests on Linux (POSIX backend)
#   3. Rust tests for x86_64-pc-windows-gnu under Wine (Windows backend)
#   4. wheels: abi3 for Linux and, cross-built, win_amd64
#   5. pytest on Linux against the Linux wheel in a fresh venv, mypy --strict, stubtest
#   6. pytest on a Windows CPython under Wine against the win_amd64 wheel
#      (../shared/wincpython; skipped, saying so, where it is absent)
#   7. benchmarks as smoke tests
# with a real Redis (Debian's redis-server) on 127.0.0.1 for the fleet tests.
# A second run reuses what the first built. Exit status: non-zero if any suite failed.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/winenv.sh
ROOT=$WSB_ROOT
VENV=$ROOT/target/venv
RESULTS=()
FAILED=0

log() { printf '\n=== %s  [%s]\n' "$*" "$(date +%H:%M:%S)"; }
record() { # name status
    RESULTS+=("$1: $2")
    [ "$2" = ok ] || FAILED=1
}
run_stage() { # name command...
    local name=$1
    shift
    log "$name"
    if "$@"; then record "$name" ok; else record "$name" "FAILED"; fi
}

# The Wine prefixes the suites use: the Rust tests' and Windows Python's.
WINE_PREFIXES=("$WINEPREFIX" "$WSB_WINCPY/.wine")
WINE_RETRIED=""

# Runs a stage that runs Wine programs, bounded: after $1 seconds it is ended
# with every Wine process of its prefixes (a Wine session whose server crashed
# waits without end). Wine 8's server crashes (SIGSEGV) when a job is ended
# while a child is being created: the tests that do that on purpose skip under
# Wine, but it can still happen elsewhere; its programs then hang, and that is
# Wine's bug, not the sandbox's: a stage that failed because its server crashed
# runs again in a new session (three sessions at most), and the summary says so.
wine_stage() { # seconds command...
    local secs=$1 try rc
    shift
    for try in 1 2 3; do
        winenv_kill "${WINE_PREFIXES[@]}"
        bounded "$secs" "$@"
        rc=$?
        [ $rc = 0 ] && return 0
        [ $rc = 125 ] || return $rc
        [ $try = 3 ] && break
        echo "!!! Wine's server crashed during this stage (a Wine bug): running it again in a new Wine session"
        local what="$1${3:+ $3}"  # the command, and the test target it runs
        case "$WINE_RETRIED" in *" [$what]"*) ;; *) WINE_RETRIED+=" [$what]" ;; esac
    done
    return 1
}

# Runs "$@" for at most $1 seconds. Exit status: its own, 124 if it was ended
# at the bound, 125 if it was ended because a Wine server of its prefixes had
# crashed with programs still waiting for it.
bounded() {
    local secs=$1 pid t=0 pfx rc=""
    shift
    set -m  # the command gets a process group of its own, ended as one
    "$@" </dev/null &
    pid=$!
    set +m
    # shellcheck disable=SC2064
    trap "kill -9 -- -$pid 2>/dev/null; winenv_kill ${WINE_PREFIXES[*]@Q}; exit 130" INT TERM
    while [ -z "$rc" ] && kill -0 "$pid" 2>/dev/null; do
        for pfx in "${WINE_PREFIXES[@]}"; do
            # gone twice, a second apart (not a server just starting)
            if [ $((t % 10)) = 9 ] && winenv_server_gone "$pfx" && sleep 1 && winenv_server_gone "$pfx"; then
                echo "!!! the Wine server of $pfx crashed; its programs wait for it: ending them"
                rc=125
            fi
        done
        if [ -z "$rc" ] && [ "$t" -ge "$secs" ]; then
            echo "!!! still running after ${secs}s: ending it and its Wine sessions"
            rc=124
        fi
        sleep 1
        t=$((t + 1))
    done
    if [ -n "$rc" ]; then
        kill -9 -- "-$pid" 2>/dev/null
        winenv_kill "${WINE_PREFIXES[@]}"
    fi
    wait "$pid"
    local own=$?
    trap - INT TERM
    return "${rc:-$own}"
}

# The Python tools, each with the minimum (and, where a major version changes
# behaviour, the maximum) the suites were verified with: stated once, used by
# every install below. pip upgrades one that an earlier run left too old.
PY_BUILD=('maturin>=1.9,<2' 'ruff>=0.6')
PY_TEST=('pytest>=8' 'pytest-timeout>=2.3' 'pytest-benchmark>=4' 'mypy>=1.10')
PY_FLEET='celery[redis]>=5.3'  # winsandbox[celery], for the fleet tests (both Pythons)
WSB_APT_MIN+=(redis-server:5:7.0)  # the fleet tests' broker: a real Redis
PY_MIN=3.9

# A Python 3 of at least PY_MIN with venv and pip (Debian's, installed if missing).
host_python() {
    if ! python3 -c "import sys, venv, ensurepip; sys.exit(sys.version_info < tuple(map(int, '$PY_MIN'.split('.'))))" 2>/dev/null; then
        winenv_log "python3 >= $PY_MIN with venv is missing: installing Debian's"
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends python3 python3-venv python3-pip >/dev/null || return 1
        python3 -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$PY_MIN'.split('.'))))" ||
            { winenv_log "python3 $(python3 -V 2>&1) found, $PY_MIN or newer is needed"; return 1; }
    fi
}

setup() {
    winenv_install || return 1
    host_python || return 1
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV" || return 1
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_BUILD[@]}" "${PY_TEST[@]}" || return 1
    winenv_prefix
}

lint() {
    local ok=0
    cargo fmt --check || ok=1
    cargo clippy --all-targets --features python -q -- -D warnings || ok=1
    wincargo clippy --all-targets -q -- -D warnings || ok=1
    "$VENV/bin/ruff" check python tests/python benches || ok=1
    "$VENV/bin/ruff" format --check python tests/python benches || ok=1
    return $ok
}

rust_linux() { cargo test --no-fail-fast; }

# libtest counts a test that returns early as passed: the Rust tests that skip
# under Wine log themselves here (tests/common: skip_under_wine), and the
# summary counts them as skips.
RUST_SKIPS=$ROOT/target/rust-wine-skips.txt
# Each test target runs in a Wine session of its own: a crash of Wine's server
# then costs a rerun of that target only.
rust_windows() {
    local ok=0 t targets=(--lib --bins)
    rm -f "$RUST_SKIPS"
    wincargo test --tests --no-run -q || return 1
    for t in tests/*.rs; do t=${t#tests/}; targets+=("--test=${t%.rs}"); done
    for t in "${targets[@]}"; do
        WSB_SKIP_LOG="Z:$RUST_SKIPS" wine_stage 600 wincargo test "$t" --no-fail-fast || ok=1
    done
    return $ok
}

wheels() {
    rm -rf target/wheels
    "$VENV/bin/maturin" build --release --out target/wheels/linux || return 1
    winenv_wheel "$VENV/bin/maturin" target/wheels/win
}

python_linux() {
    local tv=$ROOT/target/venv-test ok=0
    rm -rf "$tv"
    python3 -m venv "$tv" && "$tv/bin/pip" install -q --disable-pip-version-check \
        "${PY_TEST[@]}" "$PY_FLEET" target/wheels/linux/*.whl || return 1
    (cd tests/python && WINSANDBOX_WHEEL_DIR=$ROOT/target/wheels WINSANDBOX_FROM_WHEEL=1 \
        "$tv/bin/python" -m pytest -p no:cacheprovider -q) || ok=1
    echo "--- mypy --strict (package, tests, benches)"
    "$tv/bin/mypy" python/winsandbox tests/python || ok=1
    "$tv/bin/mypy" benches || ok=1  # its own conftest: a second run
    echo "--- stubtest winsandbox._winsandbox (the installed module against its stub)"
    (cd "$tv" && "$tv/bin/python" -m mypy.stubtest --allowlist "$ROOT/.mypy-stubtest-allowlist" \
        winsandbox._winsandbox) || ok=1
    return $ok
}

python_windows() {
    if [ ! -f "$WSB_WINCPY_TOOL/build.sh" ]; then
        echo "SKIPPED: $WSB_WINCPY_TOOL is absent, so no Windows Python to run pytest on;"
        echo "the windows-latest job of .github/workflows/ci.yml runs this suite natively."
        return 0
    fi
    wincpy_setup "${PY_TEST[0]}" "${PY_TEST[1]}" "$PY_FLEET" target/wheels/win/*.whl || return 1
    wine_stage 1200 wincpy_pytest
}

wincpy_pytest() { cd tests/python && PYTHONUTF8=1 wincpy -m pytest -p no:cacheprovider -q -rs; }

# A real Redis for the fleet tests (tests/python/fleet.py), on a free port of
# 127.0.0.1, from the wheel stages to the end; stopped on any exit.
REDIS_PID=""
redis_start() {
    local port dir=$ROOT/target/redis
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$dir" >"$dir/log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 100); do
        redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
        sleep 0.1
    done
    redis-cli -p "$port" ping 2>/dev/null | grep -q PONG || { cat "$dir/log"; return 1; }
    export WINSANDBOX_TEST_REDIS_URL=redis://127.0.0.1:$port WINSANDBOX_TEST_REDIS_URL_REQUIRED=1
    echo "redis-server $(redis-server --version | grep -o 'v=[0-9.]*') on $WINSANDBOX_TEST_REDIS_URL (pid $REDIS_PID)"
}
redis_stop() {
    [ -n "$REDIS_PID" ] || return 0
    kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
    REDIS_PID=""
    unset WINSANDBOX_TEST_REDIS_URL WINSANDBOX_TEST_REDIS_URL_REQUIRED
}
trap redis_stop EXIT

benches() {
    (cd benches && "$ROOT/target/venv-test/bin/python" -m pytest -p no:cacheprovider -q --benchmark-disable)
}

run_stage "setup (apt packages, tool venv, Wine prefix)" setup || true
if [ "$FAILED" = 1 ]; then
    echo "setup failed"
    exit 1
fi
run_stage "lint (fmt, clippy Linux + Windows, ruff)" lint
run_stage "Rust tests on Linux (POSIX backend)" rust_linux
run_stage "Rust tests for Windows under Wine" rust_windows
winenv_stop
run_stage "wheels (abi3 Linux, abi3 win_amd64)" wheels
run_stage "Redis for the fleet tests" redis_start
run_stage "pytest + mypy + stubtest on Linux" python_linux
run_stage "pytest on Windows CPython under Wine" python_windows
run_stage "benchmarks (smoke)" benches
redis_stop
winenv_stop

log "summary"
for r in "${RESULTS[@]}"; do echo "  $r"; done
if [ -s "$RUST_SKIPS" ]; then  # a retried session logs its skips again: counted once
    echo "  Rust tests under Wine: $(sort -u "$RUST_SKIPS" | wc -l) skipped (libtest counts them as passed):"
    sort -u "$RUST_SKIPS" | sed 's/^/    skipped: /'
fi
[ -z "$WINE_RETRIED" ] ||
    echo "  note: Wine's server crashed (a Wine bug) and a new session ran again:$WINE_RETRIED"
exit $FAILED
