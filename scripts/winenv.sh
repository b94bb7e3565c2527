# shellcheck shell=bash
# Sourced by the other scripts: the Windows cross-build and its Wine runner.
#
#   winenv_install   apt-get installs or upgrades what is missing or older
#                    than its minimum (WSB_APT_MIN: Debian's rustc-web,
#                    cargo-web, rust-web-src, mingw-w64, wine64), then checks it
#   winenv_prefix    creates the Wine prefix target/wine (Windows 10) and puts
#                    the ProcessPrng shim DLL (shims/bcryptprimitives.c) in it
#   wincargo ARGS    Debian's cargo for x86_64-pc-windows-gnu with -Zbuild-std;
#                    `wincargo test` runs the test binaries under Wine
#
# Everything lands in target/: a second run reuses what the first built.

WSB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WSB_TARGET=x86_64-pc-windows-gnu
WSB_WINTARGET_DIR="$WSB_ROOT/target/win"
export WINEPREFIX="$WSB_ROOT/target/wine"
export WINEARCH=win64
export WINEDEBUG=${WINEDEBUG:--all}
# no Mono/Gecko prompts, no desktop menu entries
export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d"
WSB_WINE=/usr/lib/wine/wine64
WSB_WINESERVER=/usr/lib/wine/wineserver

# Every Wine program runs through wsbwine: wine64 with the address space not
# randomised (setarch -R; every process it starts inherits that). With
# randomisation, about one Wine process start in a thousand dies before its
# first instruction: "failed to map the shared user data" (its fixed address
# 0x7ffe0000 is taken), which CreateProcessW reports as ERROR_INTERNAL_ERROR.
# Randomised, the heap here starts up to hundreds of MB past wine64 (seen:
# 290 MB); with -R it follows it, and in 4,000 starts no start failed.
wsbwine() { setarch -R "$WSB_WINE" "$@"; }

winenv_log() { printf '[winenv %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Debian packages the builds need, each with the minimum version whose
# behaviour was verified (stated here once). The Windows cross-build needs a
# cargo that takes CARGO_UNSTABLE_BUILD_STD=std,panic_abort,test: 1.85 rejects
# it ("invalid character `,` in package name"); 1.96 is the one verified.
WSB_APT_MIN=(
    rustc-web:1.96 cargo-web:1.96 rust-web-src:1.96 rust-web-clippy:1.96
    gcc-mingw-w64-x86-64:12.2.0-14 binutils-mingw-w64-x86-64:2.40 wine64:8.0~
)

# The installed version of package $1, or nothing.
wsb_dpkg_version() {
    dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null |
        awk '$1 == "install" && $3 == "installed" { print $4 }'
}

# Each "package:minimum" of $@ that is missing or older than its minimum.
wsb_apt_short() {
    local spec v
    for spec in "$@"; do
        v=$(wsb_dpkg_version "${spec%%:*}")
        if [ -z "$v" ] || ! dpkg --compare-versions "$v" ge "${spec#*:}"; then echo "$spec"; fi
    done
}

# Installs or upgrades every package of WSB_APT_MIN that is missing or too old.
# The package lists are refreshed first (an image's lists can be old enough to
# offer only a version below the minimum), once; afterwards what was installed
# is checked, package by package and through the tools themselves, and a
# minimum that still cannot be had stops the run with one line naming it.
winenv_install() {
    local short spec v
    mapfile -t short < <(wsb_apt_short "${WSB_APT_MIN[@]}")
    if [ ${#short[@]} -gt 0 ]; then
        winenv_log "installing or upgrading: ${short[*]} (package:minimum)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null ||
            { winenv_log "apt-get update failed"; return 1; }
        apt-get install -y -q --no-install-recommends "${short[@]%%:*}" >/dev/null ||
            { winenv_log "apt-get install ${short[*]%%:*} failed"; return 1; }
        mapfile -t short < <(wsb_apt_short "${WSB_APT_MIN[@]}")
        for spec in "${short[@]}"; do
            v=$(wsb_dpkg_version "${spec%%:*}")
            winenv_log "${spec%%:*} ${v:-(not installed)} is installed, ${spec#*:} or newer is needed, and apt offers no newer one"
        done
        [ ${#short[@]} -eq 0 ] || return 1
    fi
    wsb_tool_min "/usr/bin/cargo --version" "$(wsb_min cargo-web)" || return 1
    wsb_tool_min "/usr/bin/rustc --version" "$(wsb_min rustc-web)" || return 1
    wsb_tool_min "x86_64-w64-mingw32-gcc -dumpversion" 12 || return 1
    wsb_tool_min "$WSB_WINE --version" 8.0 || return 1
}

wsb_min() { local spec; for spec in "${WSB_APT_MIN[@]}"; do [ "${spec%%:*}" = "$1" ] && echo "${spec#*:}"; done; }

# Runs the command $1 and checks the first version number it prints ("cargo
# 1.96.0 (...)", "wine-8.0 (...)", "12-win32") is at least $2.
wsb_tool_min() {
    local out v
    out=$($1 2>&1 | head -1) || true
    v=$(grep -oE '(^|[ -])[0-9]+(\.[0-9]+)*' <<<"$out" | head -1 | tr -d ' -')
    if [ -z "$v" ] || ! dpkg --compare-versions "$v" ge "$2"; then
        winenv_log "\`$1\` printed \"$out\": version ${v:-unknown} found, $2 or newer is needed"
        return 1
    fi
}

# Wine ignores SEM_NOGPFAULTERRORBOX and JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION
# and runs `winedbg --auto` on a crash, which ends the process with
# STATUS_DEBUGGER_INACTIVE. A debugger that cannot start makes Wine end it with
# the exception's own code, as Windows does.
winenv_no_debugger() {
    wsbwine reg add 'HKLM\Software\Microsoft\Windows NT\CurrentVersion\AeDebug' \
        /v Debugger /t REG_SZ /d 'winsandbox-no-debugger.exe' /f
}

winenv_prefix() {
    local shim="$WSB_ROOT/target/shim/bcryptprimitives.dll"
    if [ ! -f "$shim" ] || [ "$WSB_ROOT/shims/bcryptprimitives.c" -nt "$shim" ]; then
        mkdir -p "$(dirname "$shim")"
        x86_64-w64-mingw32-gcc -shared -O2 -o "$shim" "$WSB_ROOT/shims/bcryptprimitives.c" -lbcrypt
    fi
    if [ ! -f "$WINEPREFIX/.winsandbox-ready" ]; then
        winenv_log "creating Wine prefix $WINEPREFIX"
        mkdir -p "$WINEPREFIX"
        {
            wsbwine wineboot --init &&
            wsbwine reg add 'HKCU\Software\Wine' /v Version /t REG_SZ /d win10 /f &&
            winenv_no_debugger &&
            "$WSB_WINESERVER" -w
        } </dev/null >"$WSB_ROOT/target/wine-init.log" 2>&1 ||
            { winenv_log "wineboot failed: see target/wine-init.log"; return 1; }
        touch "$WINEPREFIX/.winsandbox-ready"
    fi
    # Windows work without a display (Wine's "null" graphics driver): the
    # tests make a window and look for it from another desktop. Also done
    # for a prefix made before this line existed.
    if [ ! -f "$WINEPREFIX/.winsandbox-headless" ]; then
        { wsbwine reg add 'HKCU\Software\Wine\Drivers' /v Graphics /t REG_SZ /d null /f &&
            "$WSB_WINESERVER" -w; } </dev/null >>"$WSB_ROOT/target/wine-init.log" 2>&1 ||
            { winenv_log "setting Wine's null graphics driver failed: see target/wine-init.log"; return 1; }
        touch "$WINEPREFIX/.winsandbox-headless"
    fi
    cp -f "$shim" "$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll"
}

wincargo() {
    PATH="/usr/bin:$PATH" \
    RUSTC_BOOTSTRAP=1 \
    RUSTC=/usr/bin/rustc \
    RUSTDOC=/usr/bin/rustdoc \
    CARGO_TARGET_DIR="$WSB_WINTARGET_DIR" \
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
    CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$WSB_ROOT/scripts/wine-run.sh" \
    CARGO_UNSTABLE_BUILD_STD=std,panic_abort,test \
        /usr/bin/cargo "$1" --target "$WSB_TARGET" "${@:2}"
}

winenv_stop() { "$WSB_WINESERVER" -k >/dev/null 2>&1 || true; }

# Starts the Wine server of WINEPREFIX (or of the prefix $1) before any Wine
# program, persistent until winenv_stop, with its output in
# target/wineserver.log: started by the first program instead, it would write
# to that program's terminal (when it stops, a dump of hundreds of its objects).
winenv_server() {
    mkdir -p "$WSB_ROOT/target"
    WINEPREFIX=${1:-$WINEPREFIX} "$WSB_WINESERVER" -p 2>>"$WSB_ROOT/target/wineserver.log" </dev/null >&2 || true
}

# The pids of the Wine processes (programs and server) of the prefix $1.
winenv_pids() {
    local p exe
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        case $exe in /usr/lib/wine/*) ;; *) continue ;; esac
        tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qxF "WINEPREFIX=$1" && echo "${p#/proc/}"
    done
}

# Ends every Wine process of the prefixes $@ at once (SIGKILL): what is left
# when a Wine session hangs, as it does when its server crashed.
winenv_kill() {
    local pfx
    for pfx in "$@"; do
        # shellcheck disable=SC2046
        kill -9 $(winenv_pids "$pfx") 2>/dev/null || true
    done
}

# Whether the Wine server of the prefix $1 is gone while programs of it live
# (it crashed: Wine bug; its programs then wait for it without end).
winenv_server_gone() {
    local pid exe server=0 programs=0
    for pid in $(winenv_pids "$1"); do
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
        case $exe in */wineserver*) server=1 ;; *) programs=1 ;; esac
    done
    [ $programs = 1 ] && [ $server = 0 ]
}

# The abi3 win_amd64 wheel, cross-built by maturin ($1) into the folder $2.
winenv_wheel() {
    PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc CARGO=/usr/bin/cargo \
        CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc \
        CARGO_UNSTABLE_BUILD_STD=std,panic_abort \
        "$1" build --release --target "$WSB_TARGET" --target-dir "$WSB_WINTARGET_DIR" --out "$2"
}

# The Windows CPython of ../shared/wincpython, built once into WSB_WINCPY.
WSB_WINCPY_TOOL=$(cd "$WSB_ROOT/.." && pwd)/shared/wincpython
WSB_WINCPY=${WINCPYTHON_PREFIX:-/opt/wincpython}

# Builds it (instant once built) and installs the given packages and wheels;
# as in winenv_no_debugger, a crash ends with its own code, not winedbg's.
wincpy_setup() {
    setarch -R bash "$WSB_WINCPY_TOOL/build.sh" "$WSB_WINCPY" || return 1
    setarch -R bash "$WSB_WINCPY_TOOL/pip-install.sh" "$WSB_WINCPY" "$@" >/dev/null || return 1
    wincpy -c "import winreg
k = winreg.CreateKey(winreg.HKEY_LOCAL_MACHINE, r'Software\Microsoft\Windows NT\CurrentVersion\AeDebug')
winreg.SetValueEx(k, 'Debugger', 0, winreg.REG_SZ, 'winsandbox-no-debugger.exe')"
}

# Runs the Windows python.exe with these arguments (not randomised: see wsbwine).
wincpy() { setarch -R bash "$WSB_WINCPY_TOOL/run.sh" "$WSB_WINCPY" "$@"; }
