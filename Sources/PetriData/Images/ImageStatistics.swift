import Foundation

/// A few numbers that say how an image looks — what differs when another lab's images fool a model: brightness,
/// contrast, saturation, colour cast, sharpness, and size. Measured on the image resized to 224 × 224 (as a
/// backbone sees it), so sharpness does not depend on the file's resolution.
public struct ImageStatistics: Sendable, Codable, Equatable {
    public static let names = ["brightness", "contrast", "saturation", "red-blue cast", "sharpness", "size"]
    /// In the order of `names`; size is log2 of the pixel count of the file.
    public var values: [Double]

    public init(values: [Double]) { self.values = values }

    public init(_ image: FloatImage) {
        let small = image.resized(width: 224, height: 224)
        let luma = small.luma
        let n = Double(luma.count)
        let mean = luma.reduce(0) { $0 + Double($1) } / n
        let sd = (luma.reduce(0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / n).squareRoot()
        var saturation = 0.0, cast = 0.0
        for i in 0..<(224 * 224) {
            let r = Double(small.pixels[i * 3]), g = Double(small.pixels[i * 3 + 1]), b = Double(small.pixels[i * 3 + 2])
            let mx = max(r, g, b), mn = min(r, g, b)
            saturation += mx > 0 ? (mx - mn) / mx : 0
            cast += r - b
        }
        // Sharpness: mean absolute Laplacian of the luma.
        var laplacian = 0.0
        for y in 1..<223 {
            for x in 1..<223 {
                let c = Double(luma[y * 224 + x])
                let l = 4 * c - Double(luma[y * 224 + x - 1]) - Double(luma[y * 224 + x + 1]) - Double(luma[(y - 1) * 224 + x])
                    - Double(luma[(y + 1) * 224 + x])
                laplacian += abs(l)
            }
        }
        values = [mean, sd, saturation / n, cast / n, laplacian / (222 * 222), log2(Double(max(1, image.width * image.height)))]
    }

    /// Per-statistic mean and standard deviation of a set of images, and the range an image of the same kind
    /// falls in: the 0.5 % and 99.5 % quantiles, widened by a quarter of their distance on each side.
    public struct Reference: Sendable, Codable, Equatable {
        public var mean: [Double]
        public var std: [Double]
        public var low: [Double]
        public var high: [Double]

        public init(_ stats: [ImageStatistics]) {
            let k = ImageStatistics.names.count, n = Double(max(1, stats.count))
            let m = (0..<k).map { j in stats.reduce(0) { $0 + $1.values[j] } / n }
            mean = m
            std = (0..<k).map { j in (stats.reduce(0) { $0 + ($1.values[j] - m[j]) * ($1.values[j] - m[j]) } / n).squareRoot() }
            var lo: [Double] = [], hi: [Double] = []
            for j in 0..<k {
                let sorted = stats.map { $0.values[j] }.sorted()
                guard let first = sorted.first else { lo.append(-1e300); hi.append(1e300); continue }
                let a = sorted[Int(0.005 * Double(sorted.count - 1))], b = sorted[Int((0.995 * Double(sorted.count - 1)).rounded(.up))]
                let margin = max(0.25 * (b - a), 1e-6 * max(1, abs(first)))
                lo.append(a - margin)
                hi.append(b + margin)
            }
            low = lo
            high = hi
        }

        enum CodingKeys: String, CodingKey { case mean, std, low, high }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            mean = try c.decode([Double].self, forKey: .mean)
            std = try c.decode([Double].self, forKey: .std)
            // Absent (a reference without ranges): every value is in range.
            low = try c.decodeIfPresent([Double].self, forKey: .low) ?? mean.map { _ in -1e300 }
            high = try c.decodeIfPresent([Double].self, forKey: .high) ?? mean.map { _ in 1e300 }
        }

        /// Whether an image's statistics all fall in the training images' range; if not, which is out.
        public func outside(_ image: ImageStatistics) -> String? {
            for (j, name) in ImageStatistics.names.enumerated() where j < low.count && j < image.values.count {
                if image.values[j] < low[j] { return "\(name) lower" }
                if image.values[j] > high[j] { return "\(name) higher" }
            }
            return nil
        }

        /// The statistics in which `images` (their median) lie more than `cutoff` training standard deviations from
        /// the training mean, largest first, as phrases (`sharpness lower`, `size larger`).
        public func differences(_ images: [ImageStatistics], cutoff: Double = 2) -> [String] {
            guard !images.isEmpty, mean.count == ImageStatistics.names.count, std.count == mean.count else { return [] }
            var out: [(Double, String)] = []
            for (j, name) in ImageStatistics.names.enumerated() {
                let sorted = images.map { $0.values[j] }.sorted()
                let median = sorted[sorted.count / 2]
                let z = (median - mean[j]) / max(std[j], 1e-6 * max(1, abs(mean[j])))
                if abs(z) > cutoff { out.append((abs(z), "\(name) \(z > 0 ? "higher" : "lower")")) }
            }
            return out.sorted { $0.0 > $1.0 }.map(\.1)
        }
    }
}
