#!/usr/bin/env bash
# The fresh-machine check (issue 9): downgrades Debian's Rust toolchain to the
# 1.85 that an image with old package lists installs, then runs `.ci/run` from a
# clean clone of this repository's HEAD (with ../shared beside it, as CI has),
# and checks that the run upgraded the toolchain by itself and passed.
#   bash scripts/check-fresh-install.sh [REV]      (as root; REV defaults to HEAD)
# It changes the machine's packages: run it on a machine you may do that on.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
REV=${1:-HEAD}
OLD=1.85.0+dfsg3-1~deb12u3
say() { printf '[fresh-install %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

say "downgrading the toolchain to $OLD"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --allow-downgrades --no-install-recommends \
    rustc-web=$OLD cargo-web=$OLD rust-web-src=$OLD rust-web-clippy=$OLD libstd-rust-web-dev=$OLD >/dev/null
/usr/bin/cargo --version | grep -q '^cargo 1\.85\.' || { say "the downgrade did not take"; exit 1; }
say "now: $(/usr/bin/cargo --version)"

WORK=$(mktemp -d /tmp/wsb-fresh.XXXXXX)
trap 'chmod -R u+w "$WORK"; rm -rf "$WORK"' EXIT
git clone -q "$REPO" "$WORK/main"
git -C "$WORK/main" checkout -q "$REV"
cp -r "$REPO/../shared" "$WORK/shared"
chmod -R a-w "$WORK/shared"

say "running .ci/run in a clean clone ($WORK/main at $(git -C "$WORK/main" rev-parse --short HEAD))"
start=$(date +%s)
rc=0
(cd "$WORK/main" && CI=true bash .ci/run </dev/null) >"$WORK/ci.log" 2>&1 || rc=$?
secs=$(( $(date +%s) - start ))
tail -n 40 "$WORK/ci.log"
cp "$WORK/ci.log" "$REPO/target/fresh-install-ci.log" 2>/dev/null || true
say ".ci/run exited $rc after ${secs}s (log: target/fresh-install-ci.log)"
got=$(/usr/bin/cargo --version)
say "toolchain after the run: $got"
case $got in cargo\ 1.85.*) say "FAILED: the run did not upgrade the toolchain"; exit 1 ;; esac
[ "$rc" = 0 ] || { say "FAILED: .ci/run exited $rc"; exit 1; }
say "passed"
