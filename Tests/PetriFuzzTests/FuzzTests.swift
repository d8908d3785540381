import Foundation
import PetriFuzz
import Testing

/// A few hundred of `make fuzz`'s mutants, in this process: every one is refused with a message naming the
/// file, or accepted and used with well-formed output. A crash here fails the test run; a hang stalls it.
@Suite(.serialized) struct FuzzTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    @Test(arguments: FuzzKind.allCases)
    func mutantsAreRefusedOrUsedSafely(kind: FuzzKind) throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("petri-fuzz-test")
        let seeds = try FuzzSeeds(root: Self.root, scratch: scratch)
        let count = kind == .checkpoint || kind == .backbone ? 40 : 60
        var refused = 0
        for index in 0..<count {
            let (bytes, ext) = try seeds.mutant(kind, index: index, seed: 7)
            let file = scratch.appendingPathComponent("test-mutant-\(kind.rawValue).\(ext)")
            try Data(bytes).write(to: file)
            switch seeds.check(kind, file: file) {
            case .accepted: break
            case .refused: refused += 1
            case let .failed(message): Issue.record("\(kind) mutant \(index): \(message)")
            }
        }
        // The mutations reach past the first check: some mutants are refused, and not all for one reason.
        #expect(refused > 0)
    }
}
