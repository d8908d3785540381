import Foundation
import PetriEngine
import Testing
@testable import PetriData

/// A temporary folder removed when the test ends.
final class TempDir {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("petri-test-\(UUID().uuidString)")
    init() { try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
    deinit { try? FileManager.default.removeItem(at: url) }

    func file(_ relative: String, _ data: Data) throws {
        let u = url.appendingPathComponent(relative)
        try FileManager.default.createDirectory(at: u.deletingLastPathComponent(), withIntermediateDirectories: true)
        try data.write(to: u)
    }

    func copy(_ fixtureName: String, to relative: String) throws {
        try file(relative, Data(contentsOf: fixture(fixtureName)))
    }
}

@Suite struct DatasetSourceTests {
    @Test func csvWithHeaderGroupsAndBadRows() throws {
        let t = TempDir()
        try t.copy("rgb.png", to: "img/a.png")
        try t.copy("grey.png", to: "img/b.png")
        try t.copy("rgb.bmp", to: "img/c.bmp")
        try t.file("outside.png", Data())
        let csv = """
            path,label,group
            img/a.png,cat,p1
            img/b.png,dog,p1
            "img/c.bmp",dog,
            ../outside.png,cat,
            img/missing.png,cat,
            /etc/passwd,dog,
            """
        try t.file("data/labels.csv", Data(csv.utf8))
        // paths are relative to the CSV's folder: move images under data/
        try FileManager.default.moveItem(at: t.url.appendingPathComponent("img"), to: t.url.appendingPathComponent("data/img"))
        let ds = try Dataset.load(t.url.appendingPathComponent("data/labels.csv"))
        #expect(ds.classNames == ["cat", "dog"])
        #expect(ds.items.map(\.relativePath) == ["img/a.png", "img/b.png", "img/c.bmp"])
        #expect(ds.items.map(\.group) == ["p1", "p1", nil])
        #expect(ds.warnings.count == 3)
        #expect(ds.warnings.contains { $0.contains(":5:") && $0.contains("outside") })
        #expect(ds.warnings.contains { $0.contains(":6:") && $0.contains("no such file") })
        #expect(ds.warnings.contains { $0.contains(":7:") && $0.contains("/etc/passwd") })
    }

    /// A symbolic link inside the folder that leads out of it is refused like a `../` row.
    @Test func csvRefusesLinksOutOfItsFolder() throws {
        let t = TempDir()
        try t.copy("rgb.png", to: "data/in.png")
        try t.copy("grey.png", to: "data/in2.png")
        try t.copy("rgb.png", to: "secret/out.png")
        try FileManager.default.createSymbolicLink(atPath: t.url.appendingPathComponent("data/link.png").path,
                                                   withDestinationPath: t.url.appendingPathComponent("secret/out.png").path)
        try FileManager.default.createSymbolicLink(atPath: t.url.appendingPathComponent("data/inner.png").path,
                                                   withDestinationPath: t.url.appendingPathComponent("data/in.png").path)
        try t.file("data/l.csv", Data("in.png,a\nin2.png,b\nlink.png,a\ninner.png,b\n".utf8))
        let ds = try Dataset.load(t.url.appendingPathComponent("data/l.csv"))
        #expect(ds.items.map(\.relativePath) == ["in.png", "in2.png", "inner.png"])
        #expect(ds.warnings.count == 1 && ds.warnings[0].contains(":3:") && ds.warnings[0].contains("outside"))
    }

    @Test func csvWithoutHeader() throws {
        let t = TempDir()
        try t.copy("rgb.png", to: "x.png")
        try t.copy("grey.png", to: "y.png")
        try t.file("l.csv", Data("x.png,0\ny.png,1\n".utf8))
        let ds = try Dataset.load(t.url.appendingPathComponent("l.csv"))
        #expect(ds.items.count == 2 && ds.classNames == ["0", "1"])
    }

    @Test func npzMedMNISTStyle() throws {
        // Built by hand: an uncompressed zip holding two .npy arrays, via ZIPFoundation.
        let t = TempDir()
        func npy(_ descr: String, _ shape: String, _ body: [UInt8]) -> Data {
            var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
            header += String(repeating: " ", count: (64 - (10 + header.count + 1) % 64) % 64) + "\n"
            var d = Data([0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(header.count & 0xFF), UInt8(header.count >> 8)])
            d.append(header.data(using: .utf8)!)
            d.append(contentsOf: body)
            return d
        }
        let images = (0..<(3 * 2 * 2)).map { UInt8($0 * 10) }
        try t.file("a/train_images.npy", npy("|u1", "(3, 2, 2)", images))
        try t.file("a/train_labels.npy", npy("|u1", "(3, 1)", [0, 1, 1]))
        let zip = t.url.appendingPathComponent("set.npz")
        try FileManager.default.zipItem(at: t.url.appendingPathComponent("a"), to: zip, shouldKeepParent: false)
        let ds = try Dataset.load(zip)
        #expect(ds.items.count == 3 && ds.classNames == ["0", "1"])
        let img = try ds.image(of: ds.items[1], decoder: ImageDecoder())
        #expect(img.width == 2 && img.pixels[0] == 40 && img.pixels[1] == 40)
        #expect(try ds.contents(of: ds.items[2]) == [80, 90, 100, 110])
        // Dropping a class or relabelling for a model keeps each image's place in the arrays.
        let dropped = ds.droppingClasses(smallerThan: 2)
        #expect(dropped.classNames == ["1"] && dropped.items.map(\.label) == [0, 0])
        #expect(try dropped.contents(of: dropped.items[1]) == [80, 90, 100, 110])
        let (relabelled, unknown) = ds.relabelled(as: ["other", "1"])
        #expect(unknown == ["0"] && relabelled.classNames == ["other", "1"] && relabelled.items.map(\.label) == [1, 1])
        #expect(try relabelled.contents(of: relabelled.items[0]) == [40, 50, 60, 70])
    }

    @Test func oneClassAndSingletonClassesAreReported() throws {
        let t = TempDir()
        try t.copy("rgb.png", to: "only/a.png")
        let ds = try Dataset.imageFolder(t.url)
        #expect(ds.classNames == ["only"])   // loading works; training commands refuse it (tooFewClasses)
        #expect(DatasetError.tooFewClasses(t.url.path, found: ds.classNames).description.contains("at least two classes"))
    }

    @Test func symlinkLoopsDoNotHang() throws {
        let t = TempDir()
        try t.copy("rgb.png", to: "a/x.png")
        try t.copy("grey.png", to: "b/y.png")
        try FileManager.default.createSymbolicLink(at: t.url.appendingPathComponent("a/loop"),
                                                   withDestinationURL: t.url.appendingPathComponent("a"))
        let ds = try Dataset.imageFolder(t.url)
        #expect(ds.items.count == 2)
    }

    @Test func nonUTF8FileNamesDoNotCrash() throws {
        let t = TempDir()
        try t.copy("rgb.png", to: "a/ok.png")
        try t.copy("grey.png", to: "b/ok.png")
        // A Latin-1 byte (0xE9) that is not valid UTF-8.
        let raw = t.url.appendingPathComponent("b").path + "/caf\u{FFFD}.png"
        let bytes = Array(t.url.appendingPathComponent("b").path.utf8) + Array("/caf".utf8) + [0xE9] + Array(".png".utf8) + [0]
        let fd = bytes.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: bytes.count) { open($0, O_CREAT | O_WRONLY, 0o644) }
        }
        #expect(fd >= 0)
        close(fd)
        _ = raw
        let ds = try Dataset.imageFolder(t.url)
        #expect(ds.classNames == ["a", "b"])
        // The odd file is named (bytes escaped) in a warning with its folder, not dropped silently.
        #expect(ds.warnings.contains { $0.contains("/b:") && $0.contains("not valid UTF-8") && $0.contains("caf\\xE9.png") }, "\(ds.warnings)")
        // Whatever name Foundation gives the odd file, reading it fails with an error naming a path, not a crash.
        for item in ds.items {
            _ = try? ds.image(of: item, decoder: ImageDecoder())
        }
    }
}

@Suite struct InspectionTests {
    @Test func findsDuplicatesConflictsNearDuplicatesAndUnreadable() throws {
        let t = TempDir()
        try t.copy("pbc-monocyte.jpg", to: "a/one.jpg")
        try t.copy("pbc-monocyte.jpg", to: "b/same-bytes.jpg")     // conflicting duplicate
        try t.copy("rgb.png", to: "a/small.png")
        try t.copy("truncated.jpg", to: "b/broken.jpg")
        // A near-duplicate: the same photo re-encoded (PNG of its pixels).
        let img = try ImageDecoder().decode(contentsOf: fixture("pbc-monocyte.jpg"))
        try t.file("b/reencoded.png", Data(try img.pngData()))
        let ds = try Dataset.imageFolder(t.url)
        let r = ds.inspect()
        #expect(r.unreadable.count == 1 && r.unreadable[0].path.hasSuffix("broken.jpg"))
        #expect(r.exactDuplicates.count == 1)
        #expect(r.conflictingDuplicates.count == 1)
        #expect(r.nearDuplicates.count == 2)   // one.jpg ~ reencoded.png and same-bytes.jpg ~ reencoded.png
        #expect(r.nearDuplicates.allSatisfy { $0.correlation > 0.99 })
        let groups = r.duplicateGroups
        #expect(groups.compactMap { $0 }.count == 2)
    }
}

@Suite struct FewShotTests {
    let labels = (0..<40).map { $0 < 25 ? 0 : 1 }

    @Test func protocolSizesAndNesting() {
        let s = FewShotSplit(labels: labels, classes: 2, seed: 3)
        #expect(s.test.filter { labels[$0] == 0 }.count == 8)     // round(7.5) = 8
        #expect(s.test.filter { labels[$0] == 1 }.count == 5)     // round(4.5) = 5
        #expect(s.pools[0].count == 17 && s.pools[1].count == 10)
        let five = s.training(perClass: 5), ten = s.training(perClass: 10)
        #expect(five.count == 10 && Set(five).isSubset(of: Set(ten)))   // nested learning-curve sets
        #expect(Set(s.training(perClass: nil)).isDisjoint(with: s.test))
        #expect(s == FewShotSplit(labels: labels, classes: 2, seed: 3))
        #expect(s.test != FewShotSplit(labels: labels, classes: 2, seed: 4).test)
    }

    @Test func duplicatesStayTogether() {
        let groups: [String?] = labels.indices.map { $0 % 5 == 0 ? "g\($0 / 10)" : nil }
        for seed in 0..<10 as Range<UInt64> {
            let s = FewShotSplit(labels: labels, groups: groups, classes: 2, seed: seed)
            let test = Set(s.test)
            for g in Set(groups.compactMap { $0 }) {
                let members = labels.indices.filter { groups[$0] == g }
                #expect(members.allSatisfy(test.contains) || !members.contains(where: test.contains))
            }
        }
    }

    @Test func splitFileRoundTrip() throws {
        let t = TempDir()
        for i in 0..<6 { try t.copy("rgb.png", to: "\(i < 3 ? "a" : "b")/\(i).png") }
        let ds = try Dataset.imageFolder(t.url)
        let split = FewShotSplit(labels: ds.items.map(\.label), classes: 2, seed: 9)
        let file = t.url.appendingPathComponent("split.json")
        try SavedSplit(split, dataset: ds).write(to: file)
        let back = try SavedSplit.read(file).apply(to: ds)
        #expect(back.test == split.test && back.pools == split.pools)
    }
}

@Suite struct PooledDatasetTests {
    /// Two sets pooled: SET/CLASS names (the second set of the same name primed), labels offset, at most
    /// `perClass` per class, the same draw each time.
    @Test func poolingNamesClassesBySetAndCaps() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Samples/bccd-wbc-mini")
        let sample = try Dataset.imageFolder(root)
        let (pool, names) = try Dataset.pooled([sample, sample], perClass: 10, seed: 3)
        #expect(names == ["bccd-wbc-mini", "bccd-wbc-mini'"])
        #expect(pool.classNames.count == 8)
        #expect(pool.classNames[0] == "bccd-wbc-mini/" + sample.classNames[0])
        #expect(pool.classNames[4] == "bccd-wbc-mini'/" + sample.classNames[0])
        #expect(pool.classCounts == [Int](repeating: 10, count: 8))
        #expect(pool.items.filter { $0.label >= 4 }.allSatisfy { $0.relativePath.hasPrefix("bccd-wbc-mini'/") })
        #expect(try Dataset.pooled([sample], perClass: 10, seed: 3).dataset.items.map(\.path)
                == Dataset.pooled([sample], perClass: 10, seed: 3).dataset.items.map(\.path))
        var npz = sample
        npz.arrays = try ArrayImages(NumpyArray(name: "x.npz", dtype: "|u1", shape: [1, 2, 2], data: [0, 0, 0, 0]))
        #expect { try Dataset.pooled([npz], perClass: 10, seed: 0) } throws: { "\($0)".contains("cannot be pooled") }
    }
}
