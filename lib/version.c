/* Run-time version, for programs that check the library they loaded. */
#include <wsched.h>

unsigned
ws_version(void)
{
    return (WS_VERSION_MAJOR << 16) | (WS_VERSION_MINOR << 8) |
           WS_VERSION_PATCH;
}
