import Foundation

/// Deterministic SplitMix64 generator for reproducible random test shapes and data.
public struct SeededRNG: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform Float in [-scale, scale).
    public mutating func float(_ scale: Float = 1) -> Float {
        Float(Double(next() >> 11) / Double(1 << 53) * 2 - 1) * scale
    }
    public mutating func floats(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in float(scale) }
    }
}

/// Locations of committed fixtures and of the optional `../shared` folder.
public enum FixturePaths {
    /// The repository root (found from this source file's location).
    public static let repositoryRoot: URL = {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }()
    /// `Tests/Fixtures`.
    public static var fixtures: URL { repositoryRoot.appendingPathComponent("Tests/Fixtures") }
    /// `../shared` beside the repository, or nil when absent (a user's clone): tests then skip.
    public static var shared: URL? {
        let url = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared")
        return FileManager.default.fileExists(atPath: url.path) ? url : nil
    }
}
