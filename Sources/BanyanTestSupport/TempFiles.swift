import Foundation

/// A fresh folder under the system temporary directory, removed with everything in it when released.
public final class TemporaryFolder: Sendable {
    public let url: URL
    public var path: String { url.path }

    public init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("banyan-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// Copies `Tests/Fixtures/models/<fixture>` to `<self>/<name>` (so it can be corrupted) and returns the copy.
    public func copyModel(_ fixture: String, as name: String = "model") throws -> URL {
        let destination = url.appendingPathComponent(name)
        try FileManager.default.copyItem(at: FixturePaths.models.appendingPathComponent(fixture), to: destination)
        return destination
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}

extension FixturePaths {
    /// `Tests/Fixtures/models`: tiny HF checkpoints made by `scripts/make_fixtures.py`.
    public static var models: URL { fixtures.appendingPathComponent("models") }
}

/// Reads a JSON object file, lets `edit` change it, and writes it back (for breaking a copied config).
public func editJSONObject(at url: URL, _ edit: (inout [String: Any]) throws -> Void) throws {
    var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] ?? [:]
    try edit(&object)
    try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).write(to: url)
}

/// Cuts the file at `url` to its first `byteCount` bytes.
public func truncateFile(at url: URL, to byteCount: Int) throws {
    let handle = try FileHandle(forWritingTo: url)
    defer { try? handle.close() }
    try handle.truncate(atOffset: UInt64(byteCount))
}

/// A `.safetensors` file taken apart by an independent reader (not the one under test): the JSON
/// header as a dictionary and the data section verbatim, so tests can edit the header and write a
/// new file (8-byte little-endian header length, JSON header, data).
public struct SafeTensorsImage {
    public var header: [String: Any]
    public var data: Data  // everything after the header

    public init(contentsOf url: URL) throws {
        let bytes = try Data(contentsOf: url)
        let headerLength = Int(bytes.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + headerLength))) as? [String: Any] ?? [:]
        data = bytes.subdata(in: (8 + headerLength)..<bytes.count)
    }

    /// Byte length of the header as stored in `url`'s first 8 bytes.
    public static func headerLength(of url: URL) throws -> Int {
        let bytes = try Data(contentsOf: url).prefix(8)
        return Int(bytes.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
    }

    /// Tensor names (without `__metadata__`), sorted.
    public var tensorNames: [String] { header.keys.filter { $0 != "__metadata__" }.sorted() }

    public func entry(_ name: String) -> [String: Any] { header[name] as? [String: Any] ?? [:] }
    public func shape(_ name: String) -> [Int] { entry(name)["shape"] as? [Int] ?? [] }
    public func dtype(_ name: String) -> String { entry(name)["dtype"] as? String ?? "" }
    /// `[begin, end)` of the tensor's bytes within `data`.
    public func offsets(_ name: String) -> (begin: Int, end: Int) {
        let o = entry(name)["data_offsets"] as? [Int] ?? [0, 0]
        return (o[0], o[1])
    }
    /// The tensor's raw bytes.
    public func bytes(_ name: String) -> Data {
        let (b, e) = offsets(name)
        return data.subdata(in: b..<e)
    }
    /// The tensor widened to float32 (F32, F16 or BF16, little-endian).
    public func floats(_ name: String) -> [Float] {
        let raw = [UInt8](bytes(name))
        switch dtype(name) {
        case "F32":
            return stride(from: 0, to: raw.count, by: 4).map { i in
                Float(bitPattern: UInt32(raw[i]) | UInt32(raw[i + 1]) << 8 | UInt32(raw[i + 2]) << 16 | UInt32(raw[i + 3]) << 24)
            }
        case "F16":
            return stride(from: 0, to: raw.count, by: 2).map { i in Float(Float16(bitPattern: UInt16(raw[i]) | UInt16(raw[i + 1]) << 8)) }
        case "BF16":
            return stride(from: 0, to: raw.count, by: 2).map { i in Float(bitPattern: (UInt32(raw[i]) | UInt32(raw[i + 1]) << 8) << 16) }
        default:
            return []
        }
    }

    public mutating func edit(_ name: String, _ change: (inout [String: Any]) -> Void) {
        var e = entry(name)
        change(&e)
        header[name] = e
    }

    /// The file's bytes; the header is padded with spaces to a multiple of 8 as the reference writer does.
    public func serialized() throws -> Data {
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(UInt8(ascii: " ")) }
        var out = Data(count: 8)
        for i in 0..<8 { out[i] = UInt8(truncatingIfNeeded: UInt64(json.count) >> (8 * UInt64(i))) }
        return out + json + data
    }

    public func write(to url: URL) throws { try serialized().write(to: url) }
}
