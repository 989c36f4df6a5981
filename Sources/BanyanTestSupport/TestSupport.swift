import Foundation
import BanyanKernels

/// Deterministic generator (SplitMix64) for reproducible random test shapes and data.
public struct SeededRNG: RandomNumberGenerator, Sendable {
    private var generator: SplitMix64
    public init(seed: UInt64) { generator = SplitMix64(seed: seed) }
    public mutating func next() -> UInt64 { generator.next() }
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
