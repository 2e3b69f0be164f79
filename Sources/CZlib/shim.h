#include <zlib.h>

// inflateInit2 is a macro (it passes ZLIB_VERSION and sizeof(z_stream) for an ABI check), and Swift
// cannot import function-like macros, so it is wrapped in a function.
static inline int keel_inflateInit2(z_streamp stream, int windowBits) {
    return inflateInit2(stream, windowBits);
}
