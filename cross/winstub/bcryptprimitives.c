/* Test-only stand-in for bcryptprimitives.dll, which wine 8.0 (Debian 12) lacks.
 * Every Windows executable built by Rust >= 1.78 imports bcryptprimitives!ProcessPrng for
 * std's random numbers; without this DLL wine refuses to start them (exit status 53).
 * ProcessPrng fills the buffer from advapi32!SystemFunction036 (RtlGenRandom), which wine has.
 * Built by cross/wine-prefix.sh with x86_64-w64-mingw32-gcc into the project's wine prefix;
 * never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
