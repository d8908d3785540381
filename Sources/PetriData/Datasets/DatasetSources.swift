import Foundation

/// Images held as one uint8 array `[N, H, W]` or `[N, H, W, C]` (MedMNIST-style .npz sources).
public final class ArrayImages: Sendable {
    public let count: Int
    public let width: Int
    public let height: Int
    public let channels: Int
    let pixels: [UInt8]

    init(_ array: NumpyArray) throws {
        guard array.dtype == "|u1", array.shape.count == 3 || array.shape.count == 4 else {
            throw DatasetError.malformed(array.name, reason: "expected uint8 images [N, H, W] or [N, H, W, C], found \(array.dtype) \(array.shape)")
        }
        count = array.shape[0]
        height = array.shape[1]
        width = array.shape[2]
        channels = array.shape.count == 4 ? array.shape[3] : 1
        guard [1, 3, 4].contains(channels) else {
            throw DatasetError.malformed(array.name, reason: "images with \(channels) channels")
        }
        pixels = array.data
    }

    func bytes(_ i: Int) -> ArraySlice<UInt8> {
        let size = width * height * channels
        return pixels[(i * size)..<((i + 1) * size)]
    }

    func image(_ i: Int) -> RGBImage {
        RGBImage(width: width, height: height,
                 pixels: expandToRGB(Array(bytes(i)), pixelCount: width * height, channels: channels),
                 sourceChannels: channels)
    }
}

extension Dataset {
    /// `.npz` with `images`/`labels` (optionally `class_names`) or MedMNIST's `{train,val,test}_images`/`_labels`
    /// (all splits, in that order; the split is kept as the item's name prefix).
    public static func npz(_ url: URL) throws -> Dataset {
        guard FileManager.default.fileExists(atPath: url.path) else { throw DatasetError.notFound(url.path) }
        let arrays = try NPZ.read(url)
        var imageArrays: [(prefix: String, images: NumpyArray, labels: NumpyArray)] = []
        if let images = arrays["images"], let labels = arrays["labels"] {
            imageArrays.append(("", images, labels))
        } else {
            for split in ["train", "val", "test"] {
                if let images = arrays["\(split)_images"], let labels = arrays["\(split)_labels"] {
                    imageArrays.append(("\(split)_", images, labels))
                }
            }
        }
        guard !imageArrays.isEmpty else {
            throw DatasetError.malformed(url.path, reason: "no 'images'/'labels' or '<split>_images'/'<split>_labels' arrays (found: \(arrays.keys.sorted().joined(separator: ", ")))")
        }
        let first = try ArrayImages(imageArrays[0].images)
        var pixels: [UInt8] = []
        var labels: [Int] = [], names: [String] = []
        for (prefix, images, labelArray) in imageArrays {
            let a = try ArrayImages(images)
            guard a.width == first.width, a.height == first.height, a.channels == first.channels else {
                throw DatasetError.malformed(url.path, reason: "image arrays of different sizes")
            }
            let l = try labelArray.integers()
            guard l.count == a.count else {
                throw DatasetError.malformed(url.path, reason: "\(prefix)labels has \(l.count) entries for \(a.count) images")
            }
            pixels += a.pixels
            labels += l
            names += (0..<a.count).map { "\(prefix)images[\($0)]" }
        }
        var shape = [labels.count, first.height, first.width]
        if first.channels > 1 { shape.append(first.channels) }
        let combined = try ArrayImages(NumpyArray(name: url.path, dtype: "|u1", shape: shape, data: pixels))
        let distinct = Array(Set(labels)).sorted()
        let given = try arrays["class_names"].map { try $0.strings() }
        guard distinct.allSatisfy({ $0 >= 0 && (given == nil || $0 < given!.count) }) else {
            throw DatasetError.malformed(url.path, reason: given.map { "labels outside 0..<\($0.count) (class_names has \($0.count) names)" } ?? "negative labels")
        }
        if let given {
            guard distinct.allSatisfy({ !given[$0].isEmpty }), Set(distinct.map { given[$0] }).count == distinct.count else {
                throw DatasetError.malformed(url.path, reason: "class_names has an empty or repeated name")
            }
        }
        let classNames = given ?? distinct.map(String.init)
        // Renumber to the classes present, in label order.
        let names2 = arrays["class_names"] != nil ? distinct.map { classNames[$0] } : distinct.map(String.init)
        let index = Dictionary(uniqueKeysWithValues: distinct.enumerated().map { ($1, $0) })
        let items = labels.enumerated().map { i, l in
            DatasetItem(path: "\(url.path)#\(names[i])", relativePath: names[i], label: index[l]!, arrayIndex: i)
        }
        return Dataset(root: url, classNames: names2, items: items, arrays: combined)
    }

    /// A CSV of `path,label[,group]` (header optional; columns named path/file/filename, label/class, group).
    /// Paths are relative to the CSV's folder and must stay inside it. Rows naming a missing file or a
    /// path outside the folder are skipped with a warning naming the line.
    public static func csv(_ url: URL) throws -> Dataset {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else {
            throw FileManager.default.fileExists(atPath: url.path)
                ? DatasetError.malformed(url.path, reason: "not readable as UTF-8 text")
                : DatasetError.notFound(url.path)
        }
        let root = url.deletingLastPathComponent().standardizedFileURL
        let realRoot = root.resolvingSymlinksInPath().path
        var rows = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(String.init)
            .enumerated().map { ($0 + 1, parseCSVLine($1)) }.filter { !($0.1.count == 1 && $0.1[0].isEmpty) }
        var pathColumn = 0, labelColumn = 1, groupColumn: Int? = nil
        if let header = rows.first?.1.map({ $0.lowercased().trimmingCharacters(in: .whitespaces) }),
           let p = header.firstIndex(where: { ["path", "file", "filename", "image"].contains($0) }),
           let l = header.firstIndex(where: { ["label", "class", "category"].contains($0) }) {
            pathColumn = p; labelColumn = l; groupColumn = header.firstIndex(of: "group")
            rows.removeFirst()
        } else if let first = rows.first?.1, first.count >= 3 {
            groupColumn = 2
        }
        var warnings: [String] = []
        var entries: [(path: String, relative: String, label: String, group: String?)] = []
        for (line, fields) in rows {
            guard fields.count > max(pathColumn, labelColumn) else {
                warnings.append("\(url.path):\(line): expected path,label[,group]; row skipped")
                continue
            }
            let rel = fields[pathColumn].trimmingCharacters(in: .whitespaces)
            let label = fields[labelColumn].trimmingCharacters(in: .whitespaces)
            guard !rel.isEmpty, !label.isEmpty else {
                warnings.append("\(url.path):\(line): empty path or label; row skipped")
                continue
            }
            let full = (rel.hasPrefix("/") ? URL(fileURLWithPath: rel) : root.appendingPathComponent(rel)).standardizedFileURL
            // Inside the folder by name and after following symbolic links: a link out of it is refused too.
            guard full.path.hasPrefix(root.path + "/"), full.resolvingSymlinksInPath().path.hasPrefix(realRoot + "/") else {
                warnings.append("\(url.path):\(line): \(rel) points outside the dataset folder \(root.path); row skipped")
                continue
            }
            guard FileManager.default.fileExists(atPath: full.path) else {
                warnings.append("\(url.path):\(line): \(full.path): no such file; row skipped")
                continue
            }
            let group = groupColumn.flatMap { $0 < fields.count ? fields[$0].trimmingCharacters(in: .whitespaces) : nil }
            entries.append((full.path, String(full.path.dropFirst(root.path.count + 1)), label,
                            group?.isEmpty == false ? group : nil))
        }
        let classNames = Array(Set(entries.map(\.label))).sorted()
        guard !classNames.isEmpty else { throw DatasetError.noClasses(url.path) }
        let index = Dictionary(uniqueKeysWithValues: classNames.enumerated().map { ($1, $0) })
        let items = entries.map { DatasetItem(path: $0.path, relativePath: $0.relative, label: index[$0.label]!, group: $0.group) }
        return Dataset(root: url, classNames: classNames, items: items, warnings: warnings)
    }
}

/// Splits one CSV line (RFC 4180 quoting).
func parseCSVLine(_ line: String) -> [String] {
    var fields: [String] = [], current = "", quoted = false
    var chars = line.makeIterator()
    while let c = chars.next() {
        if quoted {
            if c == "\"" {
                if let n = chars.next() {
                    if n == "\"" { current.append("\"") } else { quoted = false; if n == "," { fields.append(current); current = "" } else { current.append(n) } }
                } else { quoted = false }
            } else { current.append(c) }
        } else if c == "\"" { quoted = true }
        else if c == "," { fields.append(current); current = "" }
        else { current.append(c) }
    }
    fields.append(current)
    return fields
}
