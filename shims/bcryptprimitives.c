/* bcryptprimitives.dll for Wine 8, which has none.
 *
 * Rust's std (1.78+) takes its random numbers from ProcessPrng in
 * bcryptprimitives.dll. Wine 8 lacks the DLL, so every Rust-built Windows
 * program fails to start under it. scripts/winenv.sh builds this file with
 * mingw-w64 and installs it into the test Wine prefix's system32.
 * It is never shipped: real Windows has the DLL.
 */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!BCRYPT_SUCCESS(BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG)))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
