#include <cblas.h>

/// Stops OpenBLAS's worker threads (OpenBLAS starts them again if a call ever wants more than one thread). Not in
/// cblas.h; exported by OpenBLAS's pthread build (driver/others/blas_server.c).
int blas_thread_shutdown_(void);
