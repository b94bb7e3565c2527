#!/usr/bin/env bash
# Runs every benchmark and prints tables of ratios against baselines measured
# in the same run, interleaved (benches/spawn.rs, benches/test_api_bench.py):
#   native on Linux (POSIX backend), native for Windows under Wine,
#   the Python API on Linux and on a Windows CPython under Wine. Builds and
#   installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/winenv.sh
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "## native, Linux (POSIX backend): cargo bench --bench spawn"
cargo bench -q --bench spawn 2>/dev/null | grep -E '^(\||winsandbox)'
echo
echo "## native, Windows backend under Wine"
winenv_install
winenv_prefix
wincargo build -q --release --bins --benches 2>/dev/null
bench_exe=$(ls -t target/win/x86_64-pc-windows-gnu/release/deps/spawn-*.exe | head -1)
cp target/win/x86_64-pc-windows-gnu/release/wsb-probe.exe "$(dirname "$bench_exe")/../" 2>/dev/null || true
wsbwine "$bench_exe" 2>/dev/null | tr -d '\r' | grep -E '^(\||winsandbox)'
winenv_stop
echo
echo "## Python API, Linux"
VENV=target/venv
[ -x $VENV/bin/python ] || python3 -m venv $VENV
$VENV/bin/pip install -q maturin pytest pytest-timeout pytest-benchmark "celery[redis]>=5.3"
$VENV/bin/maturin build -q --release --out target/wheels/bench >/dev/null
$VENV/bin/pip install -q --force-reinstall target/wheels/bench/*.whl
(cd benches && ../$VENV/bin/python -m pytest -p no:cacheprovider -q -c ../pyproject.toml --rootdir . --benchmark-disable-gc . 2>/dev/null | grep -E '^(\||FAILED|ERROR|E  )')
echo
echo "## Python API, Windows CPython 3.11 under Wine (../shared/wincpython)"
if [ -f "$WSB_WINCPY_TOOL/build.sh" ]; then
    rm -rf target/wheels/bench-win
    winenv_wheel "$VENV/bin/maturin" target/wheels/bench-win >/dev/null 2>&1
    wincpy_setup pytest pytest-benchmark target/wheels/bench-win/*.whl >/dev/null
    # The no-op program is the release probe: a Python start-up under Wine
    # would drown the layer being measured. Throughput is left to the native
    # bench above: through Wine's one server, thousands of runs take minutes.
    # The scale rows' sleepers are Windows Pythons: 100 at most under Wine.
    probe="Z:$(pwd)/target/win/$WSB_TARGET/release/wsb-probe.exe"
    (cd benches && WINSANDBOX_NOOP="${probe//\//\\} exit 0" wincpy -m pytest -p no:cacheprovider -q \
        -c ../pyproject.toml --rootdir . --benchmark-disable-gc -k "python_layer or overhead or scale" . 2>/dev/null |
        tr -d '\r' | grep -E '^(\||FAILED|ERROR|E  )')
else
    echo "skipped: $WSB_WINCPY_TOOL is absent"
fi
