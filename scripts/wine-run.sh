#!/usr/bin/env bash
# Runs a Windows program under Wine in the project's prefix (cargo's runner
# for x86_64-pc-windows-gnu), not randomised (see wsbwine in winenv.sh).
# Exit status: the program's, low 8 bits.
source "$(dirname "${BASH_SOURCE[0]}")/winenv.sh"
exec setarch -R "$WSB_WINE" "$@"
