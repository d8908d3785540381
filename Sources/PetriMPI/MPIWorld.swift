import CMPI
import Foundation
import PetriLearn

/// The MPI processes this one runs with (`mpirun -np R petri …`): its rank, their number, and a sum of float
/// buffers across them (`MPI_Allreduce`), which is all data-parallel pretraining needs.
public final class MPIWorld: GradientReducer {
    public let rank: Int
    public let size: Int
    private static var finalized = false

    /// The world, when this process was started by an MPI launcher (Open MPI's, or one setting PMI); nil
    /// otherwise, so that a plain run never initialises MPI.
    public static func launched() -> MPIWorld? {
        let env = ProcessInfo.processInfo.environment
        guard env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMI_SIZE"] != nil || env["PMIX_RANK"] != nil else { return nil }
        var argc: Int32 = 0
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        guard MPI_Init(&argc, &argv) == 0 else { return nil }
        var r: Int32 = 0, n: Int32 = 0
        MPI_Comm_rank(petri_mpi_comm_world(), &r)
        MPI_Comm_size(petri_mpi_comm_world(), &n)
        atexit { MPIWorld.finish() }
        return MPIWorld(rank: Int(r), size: Int(n))
    }

    init(rank: Int, size: Int) {
        self.rank = rank
        self.size = size
    }

    public func sum(_ values: inout [Float]) {
        guard size > 1, !values.isEmpty else { return }
        // In chunks: MPI counts are 32-bit.
        let chunk = 1 << 28
        values.withUnsafeMutableBufferPointer { p in
            var start = 0
            while start < p.count {
                let n = min(chunk, p.count - start)
                MPI_Allreduce(petri_mpi_in_place(), p.baseAddress! + start, Int32(n), petri_mpi_float(), petri_mpi_sum(), petri_mpi_comm_world())
                start += n
            }
        }
    }

    static func finish() {
        guard !finalized else { return }
        finalized = true
        MPI_Finalize()
    }
}
