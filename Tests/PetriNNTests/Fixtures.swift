import Foundation
import PetriEngine

enum Fixtures {
    static func url(_ name: String) -> URL {
        let parts = name.split(separator: ".", maxSplits: 1).map(String.init)
        guard let u = Bundle.module.url(forResource: parts[0], withExtension: parts.count > 1 ? parts[1] : nil,
                                        subdirectory: "Fixtures") else {
            fatalError("test fixture \(name) is missing from Tests/PetriNNTests/Fixtures")
        }
        return u
    }

    static func npy(_ name: String) throws -> Tensor { try NPY.readTensor(url(name)) }
}
