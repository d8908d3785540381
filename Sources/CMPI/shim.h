#include <mpi.h>

// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE) are macros over addresses of its
// globals, which Swift cannot import: these return them.
static inline MPI_Comm petri_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype petri_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Op petri_mpi_sum(void) { return MPI_SUM; }
static inline void *petri_mpi_in_place(void) { return MPI_IN_PLACE; }
