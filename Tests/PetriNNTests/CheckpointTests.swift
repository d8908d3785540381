import Foundation
import Testing
@testable import PetriNN

@Suite struct CheckpointTests {
    @Test(arguments: ["tiny-zip.pth", "tiny-legacy.pth"])
    func readsStridedOffsetAndSharedTensors(file: String) throws {
        let ckpt = try Checkpoint(contentsOf: Fixtures.url(file))
        #expect(ckpt.tensors.map(\.name) == ["transposed", "offset", "shared", "count"])
        // arange(12).reshape(3, 4).t(): stored with strides (1, 4)
        #expect(ckpt["transposed"]?.shape == [4, 3])
        #expect(ckpt["transposed"]?.values == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11])
        #expect(ckpt["offset"]?.values == [5, 6, 7, 8])
        // arange(24).view(4, 6)[1:3, ::2]: offset 6, strides (6, 2)
        #expect(ckpt["shared"]?.shape == [2, 3])
        #expect(ckpt["shared"]?.values == [6, 8, 10, 12, 14, 16])
        #expect(ckpt["count"]?.type == .int64)
        #expect(ckpt["count"]?.shape == [])
        #expect(ckpt["count"]?.values == [7])
    }

    @Test func refusesCodeExecutingGlobals() throws {
        // protocol 2: GLOBAL 'os system', then a REDUCE call; the reader must refuse at the GLOBAL.
        let evil: [UInt8] = [0x80, 0x02] + Array("cos\nsystem\n".utf8) + [0x58, 2, 0, 0, 0] + Array("id".utf8)
            + [0x85, 0x52, 0x2E]
        var reader = PickleReader(file: "evil.pth", bytes: evil)
        #expect {
            _ = try reader.load { $0 }
        } throws: { error in
            "\(error)".contains("os.system") && "\(error)".contains("evil.pth")
        }
    }

    @Test func truncatedFileGivesAClearError() throws {
        let data = try Data(contentsOf: Fixtures.url("tiny-legacy.pth"))
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("petri-truncated-\(UUID()).pth")
        try data.prefix(data.count - 20).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        #expect { try Checkpoint(contentsOf: url) } throws: { "\($0)".contains(url.path) }
    }

    @Test func mismatchedCheckpointNamesEveryProblem() throws {
        let model = EfficientNetLite(.lite0)
        let ckpt = try Checkpoint(contentsOf: Fixtures.url("tiny-zip.pth"))
        #expect { try model.load(ckpt) } throws: { error in
            let text = "\(error)"
            return text.contains("missing") && text.contains("unexpected") && text.contains("transposed")
        }
    }
}
