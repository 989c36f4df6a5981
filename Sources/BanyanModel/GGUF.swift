import Foundation
import BanyanKernels

/// A GGUF metadata value. Integers of every width are widened (signed and unsigned kept apart so a
/// negative value is never mistaken for a large one); float32 and float64 both become `Double`.
public enum GGUFValue: Sendable, Equatable {
    case uint(UInt64)
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    /// The value as an `Int` when it is an integer that fits.
    public var intValue: Int? {
        switch self {
        case .uint(let u): return u <= UInt64(Int.max) ? Int(u) : nil
        case .int(let i): return Int(exactly: i)
        default: return nil
        }
    }
    /// The value as a `Double` when it is a number (integers too, as JSON readers allow).
    public var doubleValue: Double? {
        switch self {
        case .float(let d): return d
        case .uint(let u): return Double(u)
        case .int(let i): return Double(i)
        default: return nil
        }
    }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var arrayValue: [GGUFValue]? { if case .array(let a) = self { return a }; return nil }

    /// A short description for error messages (`a string "x"`, `an array of 3`).
    var brief: String {
        switch self {
        case .uint(let u): return "the integer \(u)"
        case .int(let i): return "the integer \(i)"
        case .float(let d): return "the number \(d)"
        case .bool(let b): return "\(b)"
        case .string(let s): return "the string \"\(s.prefix(40))\""
        case .array(let a): return "an array of \(a.count)"
        }
    }
}

/// One tensor of a GGUF file: name, ggml type, shape and where its bytes lie in the mapping.
public struct GGUFTensor: Sendable {
    public let name: String
    public let type: GGMLType
    /// ggml order: `shape[0]` is the row length (innermost), so an `[out, in]` matrix is `[in, out]`.
    public let shape: [Int]
    /// Absolute byte offset in the file.
    public let offset: Int
    public let byteCount: Int
    let file: MappedFile
    public var pointer: UnsafeRawPointer { file.base + offset }
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A parsed GGUF file (versions 2 and 3, little-endian; https://github.com/ggml-org/ggml/blob/master/docs/gguf.md):
/// magic, version, tensor and metadata counts, metadata key/values, tensor infos, padding to
/// `general.alignment`, then the tensor data. The file is memory-mapped and every length, count,
/// offset and size is checked against it before anything is read, so a truncated or lying file is
/// an error, never an out-of-bounds read.
public struct GGUFFile: Sendable {
    public let file: MappedFile
    public let version: Int
    public let metadata: [String: GGUFValue]
    public let tensors: [String: GGUFTensor]
    /// Tensor names in file order.
    public let tensorNames: [String]
    /// Data alignment in bytes (`general.alignment`, 32 when absent).
    public let alignment: Int
    public var path: String { file.path }

    /// GGUF's default data alignment (GGUF_DEFAULT_ALIGNMENT).
    public static let defaultAlignment = 32

    public init(path: String) throws {
        let file = try MappedFile(path: path)
        self.file = file
        var r = GGUFReader(base: file.base, size: file.size, path: path)

        guard file.size >= 4, file.base.loadUnaligned(as: UInt32.self) == 0x4655_4747 /* "GGUF" little-endian */ else {
            let found = (0..<min(4, file.size)).map { String(format: "%02x", file.base.load(fromByteOffset: $0, as: UInt8.self)) }
            throw r.fail("not a GGUF file: magic is \(found.joined(separator: " ")) (expected \"GGUF\", 47 47 55 46)")
        }
        r.offset = 4
        let version = try r.u32("version")
        if version.byteSwapped == 2 || version.byteSwapped == 3 {
            throw r.fail("big-endian GGUF (version \(version.byteSwapped)) unsupported: only little-endian files can be read")
        }
        guard version == 2 || version == 3 else {
            throw r.fail("GGUF version \(version) unsupported (2, 3)")
        }
        self.version = Int(version)
        let tensorCount = try r.count("tensor count", minimumBytesEach: 8 + 4 + 8 + 4 + 8)
        let metadataCount = try r.count("metadata count", minimumBytesEach: 8 + 4 + 1)

        var metadata: [String: GGUFValue] = [:]
        for i in 0..<metadataCount {
            let key = try r.string("metadata key \(i)")
            let type = try r.u32("type of metadata \"\(key)\"")
            let value = try r.value(type: type, what: "metadata \"\(key)\"", depth: 0)
            guard metadata.updateValue(value, forKey: key) == nil else {
                throw r.fail("metadata \"\(key)\" appears twice")
            }
        }
        var alignment = Self.defaultAlignment
        if let a = metadata["general.alignment"] {
            // Must be a power of two: ggml pads offsets with bit masks.
            guard let n = a.intValue, n > 0, n & (n - 1) == 0, n <= 1 << 30 else {
                throw r.fail("general.alignment: expected a power of two, found \(a.brief)")
            }
            alignment = n
        }
        self.alignment = alignment

        struct Info { let name: String; let type: GGMLType; let shape: [Int]; let relative: Int; let byteCount: Int }
        var infos: [Info] = []
        var names = Set<String>()
        for i in 0..<tensorCount {
            let name = try r.string("name of tensor info \(i)")
            let what = "tensor \"\(name)\""
            guard names.insert(name).inserted else { throw r.fail("\(what) appears twice") }
            let dimCount = try r.u32("\(what): dimension count")
            guard (1...4).contains(dimCount) else {  // GGML_MAX_DIMS
                throw r.fail("\(what): \(dimCount) dimensions (expected 1 to 4)")
            }
            var shape: [Int] = []
            for d in 0..<Int(dimCount) {
                let n = try r.u64("\(what): dimension \(d)")
                guard n <= UInt64(Int32.max) else { throw r.fail("\(what): dimension \(d) is \(n), implausibly large") }
                shape.append(Int(n))
            }
            let rawType = try r.u32("\(what): type")
            guard let type = GGMLType(rawValue: rawType) else {
                throw r.fail("\(what): tensor type \(GGMLType.name(ofRaw: rawType)) unsupported (supported: "
                             + GGMLType.allCases.map(\.name).joined(separator: ", ") + ")")
            }
            let relative = try r.u64("\(what): data offset")
            guard shape[0] % type.blockSize == 0, let rowBytes = type.rowByteCount(shape[0]) else {
                throw r.fail("\(what): row length \(shape[0]) is not a multiple of the \(type.name) block size \(type.blockSize)")
            }
            var byteCount = rowBytes
            for n in shape.dropFirst() {
                let (p, overflow) = byteCount.multipliedReportingOverflow(by: n)
                guard !overflow else { throw r.fail("\(what): shape \(shape) is implausibly large") }
                byteCount = p
            }
            guard relative <= UInt64(Int.max), Int(relative) % alignment == 0 else {
                throw r.fail("\(what): data offset \(relative) is not a multiple of the alignment \(alignment)")
            }
            infos.append(Info(name: name, type: type, shape: shape, relative: Int(relative), byteCount: byteCount))
        }

        // The data section starts at the next multiple of the alignment after the tensor infos.
        let dataStart = (r.offset + alignment - 1) / alignment * alignment
        let dataSize = file.size - dataStart
        var tensors: [String: GGUFTensor] = [:]
        for info in infos {
            guard dataStart <= file.size, info.relative <= dataSize, info.byteCount <= dataSize - info.relative else {
                throw r.fail("tensor \"\(info.name)\": data [\(info.relative), \(info.relative + info.byteCount)) of "
                             + "\(info.type.name) \(info.shape) lies past the end of the \(max(dataSize, 0)) data bytes (truncated file?)")
            }
            tensors[info.name] = GGUFTensor(name: info.name, type: info.type, shape: info.shape,
                                            offset: dataStart + info.relative, byteCount: info.byteCount, file: file)
        }
        self.metadata = metadata
        self.tensors = tensors
        self.tensorNames = infos.map(\.name)
    }
}

/// A bounds-checked cursor over the mapped file. Every read checks the bytes it needs are there
/// and says what it was reading when they are not.
struct GGUFReader {
    let base: UnsafeRawPointer
    let size: Int
    let path: String
    var offset = 0

    /// Nested arrays deeper than this are refused (no real file has more than one level), so a
    /// crafted file cannot recurse the parser off the stack.
    static let maximumArrayDepth = 3

    func fail(_ message: String) -> ModelError { .gguf(file: path, message: message) }

    mutating func take(_ n: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawPointer {
        guard n >= 0, n <= size - offset else {
            throw fail("truncated: \(what()) needs \(n) bytes at offset \(offset), the file has \(size - offset) left of \(size)")
        }
        defer { offset += n }
        return base + offset
    }
    mutating func u8(_ what: @autoclosure () -> String) throws -> UInt8 { try take(1, what()).load(as: UInt8.self) }
    mutating func u16(_ what: @autoclosure () -> String) throws -> UInt16 { try take(2, what()).loadUnaligned(as: UInt16.self).littleEndian }
    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 { try take(4, what()).loadUnaligned(as: UInt32.self).littleEndian }
    mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 { try take(8, what()).loadUnaligned(as: UInt64.self).littleEndian }

    /// A 64-bit count of items that each take at least `minimumBytesEach` bytes: a count the rest of
    /// the file cannot hold is a lie, reported before anything is allocated for it.
    mutating func count(_ what: @autoclosure () -> String, minimumBytesEach: Int) throws -> Int {
        let n = try u64(what())
        let left = UInt64(size - offset)
        guard n <= left / UInt64(max(minimumBytesEach, 1)) else {
            throw fail("\(what()) is \(n), more than the \(left) bytes left in the file can hold (truncated or corrupt)")
        }
        return Int(n)
    }

    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let length = try count("\(what()): string length", minimumBytesEach: 1)
        let p = try take(length, "\(what()): string")
        return String(decoding: UnsafeRawBufferPointer(start: p, count: length), as: UTF8.self)
    }

    /// One value of GGUF value type `type` (gguf_type: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32,
    /// 6 f32, 7 bool, 8 string, 9 array, 10 u64, 11 i64, 12 f64).
    mutating func value(type: UInt32, what: @autoclosure () -> String, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint(UInt64(try u8(what())))
        case 1: return .int(Int64(Int8(bitPattern: try u8(what()))))
        case 2: return .uint(UInt64(try u16(what())))
        case 3: return .int(Int64(Int16(bitPattern: try u16(what()))))
        case 4: return .uint(UInt64(try u32(what())))
        case 5: return .int(Int64(Int32(bitPattern: try u32(what()))))
        case 6: return .float(Double(Float(bitPattern: try u32(what()))))
        case 7:
            let b = try u8(what())
            guard b <= 1 else { throw fail("\(what()): bool is \(b) (expected 0 or 1)") }
            return .bool(b == 1)
        case 8: return .string(try string(what()))
        case 9:
            guard depth < Self.maximumArrayDepth else { throw fail("\(what()): arrays nested more than \(Self.maximumArrayDepth) deep") }
            let elementType = try u32("\(what()): array element type")
            let minimum: Int
            switch elementType {
            case 0, 1, 7: minimum = 1
            case 2, 3: minimum = 2
            case 4, 5, 6: minimum = 4
            case 8, 10, 11, 12: minimum = 8
            case 9: minimum = 12
            default: throw fail("\(what()): unknown array element type \(elementType) (expected 0 to 12)")
            }
            let n = try count("\(what()): array length", minimumBytesEach: minimum)
            var values: [GGUFValue] = []
            values.reserveCapacity(n)
            for i in 0..<n { values.append(try value(type: elementType, what: "\(what())[\(i)]", depth: depth + 1)) }
            return .array(values)
        case 10: return .uint(try u64(what()))
        case 11: return .int(Int64(bitPattern: try u64(what())))
        case 12: return .float(Double(bitPattern: try u64(what())))
        default: throw fail("\(what()): unknown value type \(type) (expected 0 to 12)")
        }
    }
}
