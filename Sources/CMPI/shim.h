// OpenMPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE, …) are macros over
// addresses of global objects, which Swift cannot import; these functions make them callable.
#define OMPI_SKIP_MPICXX 1
#include <mpi.h>

static inline MPI_Comm keel_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Comm keel_mpi_comm_null(void) { return MPI_COMM_NULL; }
static inline MPI_Datatype keel_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype keel_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype keel_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Datatype keel_mpi_int32(void) { return MPI_INT32_T; }
static inline MPI_Op keel_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op keel_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op keel_mpi_min(void) { return MPI_MIN; }
static inline void *keel_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Status *keel_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Request keel_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Errhandler keel_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int keel_mpi_status_source(const MPI_Status *status) { return status->MPI_SOURCE; }

#include <malloc.h>
// OpenMPI allocates temporaries the size of the message for large collectives on every call; glibc would
// map and unmap each one and page-fault through it each time. Keep freed memory in the heap instead.
static inline void keel_keep_freed_memory(void) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}
