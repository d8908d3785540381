import Foundation
import PetriEngine

/// One labelled image of a dataset.
public struct DatasetItem: Sendable, Hashable {
    /// Absolute path.
    public let path: String
    /// Path relative to the dataset root (what reports and split files show).
    public let relativePath: String
    public let label: Int
    /// Optional grouping (patient, slide, duplicate cluster): items of one group never straddle a split.
    public var group: String?
    /// For array sources (.npz): the image's index in `Dataset.arrays`.
    public var arrayIndex: Int?

    public init(path: String, relativePath: String, label: Int, group: String? = nil, arrayIndex: Int? = nil) {
        self.path = path
        self.relativePath = relativePath
        self.label = label
        self.group = group
        self.arrayIndex = arrayIndex
    }
}

/// Problems with a dataset as a whole. Each names the path concerned.
public enum DatasetError: Error, CustomStringConvertible {
    case notFound(String)
    case notADirectory(String)
    case noClasses(String)
    case tooFewClasses(String, found: [String])
    case malformed(String, reason: String)

    public var description: String {
        switch self {
        case let .malformed(p, r): "\(p): \(r)"
        case let .notFound(p): "\(p): no such file or folder"
        case let .notADirectory(p): "\(p): not a folder (an ImageFolder dataset is a folder of class folders)"
        case let .noClasses(p): "\(p): no class folders with images found (expected DATA/<class>/<image>)"
        case let .tooFewClasses(p, found): "\(p): classification needs at least two classes with images, found \(found.count) (\(found.joined(separator: ", ")))"
        }
    }
}

/// A labelled image set: items plus class names (label i ↔ classNames[i]).
public struct Dataset: Sendable {
    public let root: URL
    public var classNames: [String]
    public var items: [DatasetItem]
    /// Things a user should know that did not stop loading (empty classes, ignored files).
    public var warnings: [String]
    /// Pixel arrays of an .npz source (nil for file-based sources).
    public var arrays: ArrayImages?
    /// Deterministic preprocessing every consumer applies before its own steps (stain normalisation,
    /// CLAHE...): set once here, it reaches feature extraction, training, prediction and CAMs alike, and
    /// a saved model records it (`SavedModel.preprocessing`) so prediction repeats it.
    public var preprocessing = TransformPipeline()

    public init(root: URL, classNames: [String], items: [DatasetItem], warnings: [String] = [],
                arrays: ArrayImages? = nil) {
        self.root = root
        self.classNames = classNames
        self.items = items
        self.warnings = warnings
        self.arrays = arrays
    }

    /// Opens a dataset: a folder (ImageFolder), a `.csv` (`path,label[,group]`) or a `.npz` (MedMNIST style).
    public static func load(_ url: URL) throws -> Dataset {
        switch url.pathExtension.lowercased() {
        case "csv": return try csv(url)
        case "npz": return try npz(url)
        default: return try imageFolder(url)
        }
    }

    /// The item's encoded file bytes, or for array sources its raw pixels (what content hashes are over).
    public func contents(of item: DatasetItem) throws -> [UInt8] {
        if let i = item.arrayIndex, let a = arrays { return Array(a.bytes(i)) }
        guard let data = FileManager.default.contents(atPath: item.path) else {
            throw ImageDecodingError(path: item.path, reason: .unreadable(
                FileManager.default.fileExists(atPath: item.path) ? "permission denied or not a regular file" : "no such file"))
        }
        return [UInt8](data)
    }

    /// The item's pixels (decoded from `bytes` if given, to avoid reading the file twice).
    public func image(of item: DatasetItem, decoder: ImageDecoder, bytes: [UInt8]? = nil) throws -> RGBImage {
        if let i = item.arrayIndex, let a = arrays { return a.image(i) }
        return try decoder.decode(bytes ?? contents(of: item), path: item.path)
    }

    /// The item's pixels as floats with the dataset's `preprocessing` applied: what networks see.
    public func preparedImage(of item: DatasetItem, decoder: ImageDecoder) throws -> FloatImage {
        let image = FloatImage(try self.image(of: item, decoder: decoder))
        return preprocessing.isEmpty ? image : preprocessing(image)
    }

    public static let imageExtensions: Set<String> = ["jpg", "jpeg", "png", "tif", "tiff", "bmp"]

    /// A folder of class folders (`DATA/<class>/**/<image>`); classes sorted by name as torchvision does.
    /// Files with other extensions are ignored; hidden files and folders are skipped; empty classes are
    /// dropped with a warning.
    public static func imageFolder(_ root: URL) throws -> Dataset {
        let fm = FileManager.default
        let root = root.standardizedFileURL
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: root.path, isDirectory: &isDir) else { throw DatasetError.notFound(root.path) }
        guard isDir.boolValue else { throw DatasetError.notADirectory(root.path) }
        let entries = try fm.contentsOfDirectory(atPath: root.path).filter { !$0.hasPrefix(".") }.sorted()
        var classNames: [String] = []
        var items: [DatasetItem] = []
        var warnings: [String] = []
        let odd = undecodableNames(in: root.path)
        if !odd.isEmpty {
            warnings.append("\(root.path): \(odd.count) name(s) that are not valid UTF-8 skipped (rename them): \(odd.joined(separator: ", "))")
        }
        for name in entries {
            var sub: ObjCBool = false
            let dir = root.appendingPathComponent(name)
            guard fm.fileExists(atPath: dir.path, isDirectory: &sub), sub.boolValue else { continue }
            let files = imageFiles(under: dir, warnings: &warnings)
            if files.isEmpty {
                warnings.append("\(dir.path): class folder has no images; class '\(name)' is ignored")
                continue
            }
            let label = classNames.count
            classNames.append(name)
            for f in files {
                items.append(DatasetItem(path: dir.appendingPathComponent(f).path, relativePath: "\(name)/\(f)",
                                         label: label))
            }
        }
        guard !classNames.isEmpty else { throw DatasetError.noClasses(root.path) }
        return Dataset(root: root, classNames: classNames, items: items, warnings: warnings)
    }

    /// Image files below `dir`, relative to it, sorted. Symbolic links to folders are not followed
    /// (so a link loop cannot trap the walk).
    public static func imageFiles(under dir: URL, warnings: inout [String]) -> [String] {
        let fm = FileManager.default
        guard let walker = fm.enumerator(at: dir, includingPropertiesForKeys: [.isRegularFileKey, .isSymbolicLinkKey],
                                         options: [.skipsHiddenFiles]) else { return [] }
        var out: [String] = []
        let base = dir.standardizedFileURL.path + "/"
        var folders = [dir.standardizedFileURL.path]
        for case let url as URL in walker {
            if (try? url.resourceValues(forKeys: [.isDirectoryKey]))?.isDirectory == true { folders.append(url.path) }
            guard imageExtensions.contains(url.pathExtension.lowercased()) else { continue }
            let values = try? url.resourceValues(forKeys: [.isRegularFileKey])
            var isDir: ObjCBool = false
            guard values?.isRegularFile == true
                || (fm.fileExists(atPath: url.path, isDirectory: &isDir) && !isDir.boolValue) else { continue }
            let p = url.standardizedFileURL.path
            out.append(p.hasPrefix(base) ? String(p.dropFirst(base.count)) : url.lastPathComponent)
        }
        for folder in folders {
            let odd = undecodableNames(in: folder)
            if !odd.isEmpty {
                warnings.append("\(folder): \(odd.count) file name(s) that are not valid UTF-8 skipped (rename them): \(odd.joined(separator: ", "))")
            }
        }
        return out.sorted()
    }

    /// Entries of `dir` whose names are not valid UTF-8 (legal on Linux, but no path Petri can name),
    /// shown with the odd bytes escaped (`caf\xE9.png`); hidden entries left out.
    static func undecodableNames(in dir: String) -> [String] {
        guard let d = opendir(dir) else { return [] }
        defer { closedir(d) }
        var out: [String] = []
        while let entry = readdir(d) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { raw in Array(raw.prefix { $0 != 0 }) }
            guard bytes.first != UInt8(ascii: "."), String(validating: bytes, as: UTF8.self) == nil else { continue }
            out.append(bytes.map { $0 < 0x80 ? String(UnicodeScalar($0)) : String(format: "\\x%02X", $0) }.joined())
        }
        return out.sorted()
    }

    public var classCounts: [Int] {
        var c = [Int](repeating: 0, count: classNames.count)
        for i in items { c[i.label] += 1 }
        return c
    }

    /// At most `limit` images per class: a seeded shuffle of each class (in file order) and its first
    /// `limit` images — a fixed, documented draw (e.g. 100 per class of pbc-8class-500 with seed 0).
    public func limitingClasses(to limit: Int, seed: UInt64) -> Dataset {
        var rng = SeededGenerator(seed: seed, stream: "class draw")
        var keep: [DatasetItem] = []
        for c in classNames.indices {
            var members = items.filter { $0.label == c }
            members.shuffle(using: &rng)
            keep += members.prefix(limit)
        }
        let order = Dictionary(uniqueKeysWithValues: items.enumerated().map { ($1.path, $0) })
        var out = self
        out.items = keep.sorted { order[$0.path]! < order[$1.path]! }
        return out
    }

    /// The images relabelled in another class list (a saved model's), matching names case-insensitively;
    /// images of classes not in `names` are left out and those classes returned, in this dataset's order.
    public func relabelled(as names: [String]) -> (dataset: Dataset, unknown: [String]) {
        let index = Dictionary(names.enumerated().map { ($1.lowercased(), $0) }, uniquingKeysWith: { a, _ in a })
        let unknown = classNames.filter { index[$0.lowercased()] == nil }
        let kept = items.compactMap { item -> DatasetItem? in
            guard let l = index[classNames[item.label].lowercased()] else { return nil }
            return DatasetItem(path: item.path, relativePath: item.relativePath, label: l, group: item.group, arrayIndex: item.arrayIndex)
        }
        var out = Dataset(root: root, classNames: names, items: kept, warnings: warnings, arrays: arrays)
        out.preprocessing = preprocessing
        return (out, unknown)
    }

    /// Several sets as one, each class named SET/CLASS (SET: the set's folder name, primed when two sets share
    /// it), at most `perClass` images per class (a seeded draw): what `petri pretrain` trains a domain backbone
    /// on. Array (.npz) sources cannot be pooled.
    public static func pooled(_ sets: [Dataset], perClass: Int, seed: UInt64) throws -> (dataset: Dataset, setNames: [String]) {
        var classNames: [String] = [], items: [DatasetItem] = [], setNames: [String] = []
        for set in sets {
            guard set.arrays == nil else {
                throw DatasetError.malformed(set.root.path, reason: ".npz sets cannot be pooled; use a folder or CSV")
            }
            let ds = set.limitingClasses(to: perClass, seed: seed)
            var name = ds.root.lastPathComponent
            while setNames.contains(name) { name += "'" }
            setNames.append(name)
            let offset = classNames.count
            classNames += ds.classNames.map { "\(name)/\($0)" }
            items += ds.items.map {
                DatasetItem(path: $0.path, relativePath: name + "/" + $0.relativePath, label: offset + $0.label,
                            group: $0.group.map { name + "/" + $0 })
            }
        }
        return (Dataset(root: URL(fileURLWithPath: "/"), classNames: classNames, items: items), setNames)
    }

    /// Drops classes with fewer than `minimum` images (with a warning) and renumbers labels.
    public func droppingClasses(smallerThan minimum: Int) -> Dataset {
        let counts = classCounts
        let keep = classNames.indices.filter { counts[$0] >= minimum }
        if keep.count == classNames.count { return self }
        var map = [Int: Int]()
        for (new, old) in keep.enumerated() { map[old] = new }
        var w = warnings
        for c in classNames.indices where counts[c] < minimum {
            w.append("class '\(classNames[c])' has \(counts[c]) image(s), fewer than \(minimum): dropped")
        }
        let kept = items.compactMap { item -> DatasetItem? in
            guard let l = map[item.label] else { return nil }
            return DatasetItem(path: item.path, relativePath: item.relativePath, label: l, group: item.group, arrayIndex: item.arrayIndex)
        }
        var out = Dataset(root: root, classNames: keep.map { classNames[$0] }, items: kept, warnings: w, arrays: arrays)
        out.preprocessing = preprocessing
        return out
    }
}
