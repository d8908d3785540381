import Foundation
import Testing

/// Data-parallel pretraining: 2 MPI processes give the weights 1 process gives (within float tolerance: the
/// slices' gradients are summed in another order), and a job killed mid-training resumes to the weights of an
/// uninterrupted one. Runs the `petri` binary that `make test` builds.
@Suite(.serialized) struct PretrainingTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let binary = root.appendingPathComponent(".build/debug/petri")
    static let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let builtWithMPI = ["/usr/lib/x86_64-linux-gnu/openmpi/include/mpi.h", "/usr/lib/aarch64-linux-gnu/openmpi/include/mpi.h",
                               "/usr/include/openmpi/mpi.h"].contains { FileManager.default.fileExists(atPath: $0) }
    static let arguments = [root.appendingPathComponent("Samples/bccd-wbc-mini").path, "--per-class", "8", "--epochs", "1",
                            "--views", "1", "--after", "stage6"]

    static func run(_ launcher: [String], _ extra: [String], threads: Int, output: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: launcher.first ?? binary.path)
        p.arguments = Array(launcher.dropFirst()) + (launcher.isEmpty ? [] : [binary.path]) + ["pretrain"] + arguments + extra + (output == nil ? ["--quiet"] : [])
        var env = ProcessInfo.processInfo.environment
        env["OMP_NUM_THREADS"] = String(threads)
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        p.environment = env
        if let output {
            _ = FileManager.default.createFile(atPath: output, contents: nil)
            p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        } else {
            p.standardError = FileHandle.nullDevice
        }
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// The values of a backbone file's tensors.
    static func values(_ path: String) throws -> [Float] {
        let b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let n = Int(b[15]) | Int(b[16]) << 8 | Int(b[17]) << 16 | Int(b[18]) << 24
        return b[(19 + n)...].withUnsafeBytes { raw in (0..<(raw.count / 4)).map { raw.loadUnaligned(fromByteOffset: 4 * $0, as: Float.self) } }
    }

    static func temporary(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("petri-pretrain-\(UUID().uuidString)-\(name)").path
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary.path) && mpirun != nil && builtWithMPI,
                   "needs .build/debug/petri built with Open MPI and mpirun (Debian: libopenmpi-dev openmpi-bin)"))
    func twoRanksGiveTheWeightsOfOne() throws {
        let one = Self.temporary("one.petri-backbone"), two = Self.temporary("two.petri-backbone")
        let a = try Self.run([], ["--name", "one", "--out", one], threads: 2)
        a.waitUntilExit()
        let log = Self.temporary("two.log")
        let b = try Self.run([Self.mpirun!, "-np", "2", "--oversubscribe"], ["--name", "two", "--out", two], threads: 1, output: log)
        b.waitUntilExit()
        // The two processes trained together (not each alone, writing one file twice).
        let said = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(said.contains("2 processes"), "rank 0 said: \(said.suffix(600))")
        #expect(a.terminationStatus == 0 && b.terminationStatus == 0)
        let x = try Self.values(one), y = try Self.values(two)
        #expect(x.count == y.count && x.count > 1_000_000)
        let diff = zip(x, y).map { abs($0 - $1) }.max() ?? .infinity
        #expect(diff < 1e-3, "largest difference \(diff)")
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: binary.path), "needs .build/debug/petri: `make test` builds it first"))
    func aKilledJobResumes() throws {
        let whole = Self.temporary("whole.petri-backbone"), killed = Self.temporary("killed.petri-backbone")
        let a = try Self.run([], ["--name", "whole", "--out", whole, "--checkpoint-every", "10"], threads: 2)
        a.waitUntilExit()
        let b = try Self.run([], ["--name", "whole", "--out", killed, "--checkpoint-every", "10"], threads: 2)
        while b.isRunning && !FileManager.default.fileExists(atPath: killed + ".resume") { usleep(10_000) }
        usleep(200_000)
        kill(b.processIdentifier, SIGKILL)
        b.waitUntilExit()
        #expect(FileManager.default.fileExists(atPath: killed + ".resume"))
        let c = try Self.run([], ["--name", "whole", "--out", killed, "--checkpoint-every", "10"], threads: 2)
        c.waitUntilExit()
        #expect(a.terminationStatus == 0 && c.terminationStatus == 0)
        #expect(!FileManager.default.fileExists(atPath: killed + ".resume"))
        let x = try Self.values(whole), y = try Self.values(killed)
        #expect(x == y)
    }
}
