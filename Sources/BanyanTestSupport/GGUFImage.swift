import Foundation

/// A GGUF metadata value as written to a file: its gguf_type code and little-endian payload.
public enum GGUFTestValue: Sendable {
    case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32), f32(Float), bool(Bool)
    case string(String), u64(UInt64), i64(Int64), f64(Double)
    /// An array with elements of one type code; `lengthOverride` writes a lying length.
    case array(elementType: UInt32, [GGUFTestValue], lengthOverride: UInt64? = nil)
    /// A value with any type code and payload (for unknown types, bad bools).
    case raw(type: UInt32, [UInt8])

    public var typeCode: UInt32 {
        switch self {
        case .u8: return 0
        case .i8: return 1
        case .u16: return 2
        case .i16: return 3
        case .u32: return 4
        case .i32: return 5
        case .f32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .u64: return 10
        case .i64: return 11
        case .f64: return 12
        case .raw(let type, _): return type
        }
    }

    public var payload: [UInt8] {
        switch self {
        case .u8(let v): return [v]
        case .i8(let v): return [UInt8(bitPattern: v)]
        case .u16(let v): return le(v)
        case .i16(let v): return le(v)
        case .u32(let v): return le(v)
        case .i32(let v): return le(v)
        case .f32(let v): return le(v.bitPattern)
        case .bool(let v): return [v ? 1 : 0]
        case .string(let s): return le(UInt64(s.utf8.count)) + Array(s.utf8)
        case .u64(let v): return le(v)
        case .i64(let v): return le(v)
        case .f64(let v): return le(v.bitPattern)
        case let .array(type, values, lengthOverride):
            return le(type) + le(lengthOverride ?? UInt64(values.count)) + values.flatMap(\.payload)
        case .raw(_, let bytes): return bytes
        }
    }
}

func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

/// A GGUF file built in memory for tests: header, metadata and tensors as given, laid out as the
/// format says unless a field is overridden to make the file lie.
public struct GGUFImage: Sendable {
    public struct Tensor: Sendable {
        public var name: String
        /// ggml order: `dims[0]` is the row length.
        public var dims: [UInt64]
        public var type: UInt32
        public var data: [UInt8]
        /// Written instead of the laid-out offset when set.
        public var offsetOverride: UInt64?
        public init(name: String, dims: [UInt64], type: UInt32, data: [UInt8], offsetOverride: UInt64? = nil) {
            self.name = name; self.dims = dims; self.type = type; self.data = data; self.offsetOverride = offsetOverride
        }
        /// A float32 tensor.
        public init(name: String, dims: [Int], floats: [Float]) {
            self.init(name: name, dims: dims.map(UInt64.init), type: 0, data: floats.flatMap { le($0.bitPattern) })
        }
    }

    public var magic: [UInt8] = Array("GGUF".utf8)
    public var version: UInt32 = 3
    public var metadata: [(key: String, value: GGUFTestValue)] = []
    public var tensors: [Tensor] = []
    /// Data alignment used for the layout (write `general.alignment` yourself to declare another).
    public var alignment = 32
    public var tensorCountOverride: UInt64?
    public var metadataCountOverride: UInt64?

    public init() {}

    public var bytes: [UInt8] {
        var out = magic + le(version)
        out += le(tensorCountOverride ?? UInt64(tensors.count))
        out += le(metadataCountOverride ?? UInt64(metadata.count))
        for (key, value) in metadata {
            out += GGUFTestValue.string(key).payload + le(value.typeCode) + value.payload
        }
        var offsets: [UInt64] = []
        var next = 0
        for t in tensors {
            offsets.append(UInt64(next))
            next = (next + t.data.count + alignment - 1) / alignment * alignment
        }
        for (t, offset) in zip(tensors, offsets) {
            out += GGUFTestValue.string(t.name).payload + le(UInt32(t.dims.count)) + t.dims.flatMap { le($0) }
            out += le(t.type) + le(t.offsetOverride ?? offset)
        }
        out += [UInt8](repeating: 0, count: (alignment - out.count % alignment) % alignment)
        let dataStart = out.count
        for (t, offset) in zip(tensors, offsets) {
            out += [UInt8](repeating: 0, count: dataStart + Int(offset) - out.count)
            out += t.data
        }
        return out
    }

    public func write(to url: URL) throws { try Data(bytes).write(to: url) }

    /// A complete, tiny float32 `llama` model (hidden 8, one layer, 2 heads, 1 KV head, FFN 16,
    /// vocabulary 6, tied embeddings) with seeded random weights.
    public static func tinyLlama(seed: UInt64 = 1) -> GGUFImage {
        var rng = SeededRNG(seed: seed)
        var image = GGUFImage()
        image.metadata = [
            ("general.architecture", .string("llama")),
            ("llama.context_length", .u32(64)),
            ("llama.embedding_length", .u32(8)),
            ("llama.block_count", .u32(1)),
            ("llama.feed_forward_length", .u64(16)),
            ("llama.attention.head_count", .u16(2)),
            ("llama.attention.head_count_kv", .i32(1)),
            ("llama.rope.freq_base", .f32(10000)),
            ("llama.attention.layer_norm_rms_epsilon", .f64(1e-5)),
            ("tokenizer.ggml.bos_token_id", .u32(1)),
            ("tokenizer.ggml.eos_token_id", .u32(2)),
            ("tokenizer.ggml.tokens", .array(elementType: 8, ["a", "b", "c", "d", "e", "f"].map { .string($0) })),
        ]
        func t(_ name: String, _ dims: [Int], norm: Bool = false) -> Tensor {
            let n = dims.reduce(1, *)
            return Tensor(name: name, dims: dims, floats: norm ? (0..<n).map { _ in 1 + rng.float(0.1) } : rng.floats(n, scale: 0.5))
        }
        image.tensors = [
            t("token_embd.weight", [8, 6]), t("blk.0.attn_norm.weight", [8], norm: true),
            t("blk.0.attn_q.weight", [8, 8]), t("blk.0.attn_k.weight", [8, 4]), t("blk.0.attn_v.weight", [8, 4]),
            t("blk.0.attn_output.weight", [8, 8]), t("blk.0.ffn_norm.weight", [8], norm: true),
            t("blk.0.ffn_gate.weight", [8, 16]), t("blk.0.ffn_up.weight", [8, 16]), t("blk.0.ffn_down.weight", [16, 8]),
            t("output_norm.weight", [8], norm: true),
        ]
        return image
    }
}

extension FixturePaths {
    /// `Tests/Fixtures/gguf`: GGUF files and references made by `scripts/make_gguf_fixtures.py`.
    public static var gguf: URL { fixtures.appendingPathComponent("gguf") }
}
