/// A ggml tensor type as stored in GGUF files (`ggml_type` in ggml.h; the raw values are the file's).
/// Block layouts follow ggml-common.h: a row of `n` elements is `n / blockSize` blocks of
/// `blockByteCount` bytes each, scales stored as IEEE half floats, everything little-endian.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1
    case q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8
    case q4_K = 12, q5_K = 13, q6_K = 14
    case bf16 = 30

    /// The name ggml and the gguf tools print (`Q4_K`, `BF16`, ...).
    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .bf16: return "BF16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q5_0: return "Q5_0"
        case .q5_1: return "Q5_1"
        case .q8_0: return "Q8_0"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        }
    }

    /// Names of the ggml types this engine does not read, so errors can say what a file holds.
    public static func name(ofRaw raw: UInt32) -> String {
        if let t = GGMLType(rawValue: raw) { return t.name }
        let others: [UInt32: String] = [
            4: "Q4_2 (removed)", 5: "Q4_3 (removed)", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 15: "Q8_K",
            16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
            23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
            34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
        ]
        return others[raw] ?? "type \(raw)"
    }

    /// Elements per block (1 for the plain float types; 256 for the K-quants' super-blocks).
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: return 32
        case .q4_K, .q5_K, .q6_K: return 256
        }
    }

    /// Bytes per block.
    public var blockByteCount: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 2 + 16            // d, 32 × 4-bit
        case .q4_1: return 2 + 2 + 16        // d, m, 32 × 4-bit
        case .q5_0: return 2 + 4 + 16        // d, high bits, 32 × low 4 bits
        case .q5_1: return 2 + 2 + 4 + 16    // d, m, high bits, low 4 bits
        case .q8_0: return 2 + 32            // d, 32 × int8
        case .q4_K: return 2 + 2 + 12 + 128  // d, dmin, 8 × (6-bit scale, 6-bit min), 256 × 4-bit
        case .q5_K: return 2 + 2 + 12 + 32 + 128
        case .q6_K: return 128 + 64 + 16 + 2 // low 4 bits, high 2 bits, 16 × int8 scale, d
        }
    }

    /// Whether values are blocks of integers with scales (not plain floats).
    public var isQuantized: Bool { blockSize > 1 }

    /// Bytes of a row of `count` elements, or nil when `count` is not a whole number of blocks.
    public func rowByteCount(_ count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: blockByteCount)
        return overflow ? nil : bytes
    }
}

/// A weight matrix still in its ggml block format: `rows` rows of `rowByteCount` bytes each, same
/// row order as the `WeightMatrix` that carries it. The seam for integer dot-product kernels, which
/// can read the blocks instead of the widened copy. The memory is owned elsewhere.
public struct QuantizedRows: @unchecked Sendable {
    public let type: GGMLType
    public let base: UnsafeRawPointer
    public let rowByteCount: Int

    public init(type: GGMLType, base: UnsafeRawPointer, rowByteCount: Int) {
        self.type = type; self.base = base; self.rowByteCount = rowByteCount
    }
}

/// Reference dequantization, one block at a time: scalar and written to read like ggml's
/// `dequantize_row_*` (ggml-quants.c). The products are evaluated in the same order as ggml's C and
/// gguf-py's numpy (`(d * scale) * q - dmin * min`), without fused multiply-adds, so the results
/// are bit-identical to gguf-py's `dequantize`.
public enum Dequantize {
    /// Widens `count` elements of `type` at `src` into `out[0..<count]`. `count` must be a whole
    /// number of blocks and `src` must hold `type.rowByteCount(count)` bytes (the caller checked both
    /// against the file).
    public static func row(_ type: GGMLType, _ src: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(count % type.blockSize == 0, "\(count) elements is not a whole number of \(type.name) blocks")
        let blocks = count / type.blockSize
        for b in 0..<blocks {
            let x = src + b * type.blockByteCount
            let y = out + b * type.blockSize
            switch type {
            case .f32: y[0] = Float(bitPattern: x.loadUnaligned(as: UInt32.self).littleEndian)
            case .f16: y[0] = half(x, 0)
            case .bf16: y[0] = bf16ToFloat(x.loadUnaligned(as: UInt16.self).littleEndian)
            case .q4_0: q4_0(x, y)
            case .q4_1: q4_1(x, y)
            case .q5_0: q5_0(x, y)
            case .q5_1: q5_1(x, y)
            case .q8_0: q8_0(x, y)
            case .q4_K: q4_K(x, y)
            case .q5_K: q5_K(x, y)
            case .q6_K: q6_K(x, y)
            }
        }
    }

    @inline(__always) static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        f16ToFloat(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self).littleEndian)
    }
    @inline(__always) static func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 {
        p.load(fromByteOffset: offset, as: UInt8.self)
    }

    // Q4_0: element j < 16 is the low nibble of qs[j], element j + 16 the high nibble; value (q - 8) · d.
    static func q4_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0), qs = x + 2
        for j in 0..<16 {
            let q = byte(qs, j)
            y[j] = Float(Int(q & 0x0F) - 8) * d
            y[j + 16] = Float(Int(q >> 4) - 8) * d
        }
    }

    // Q4_1: as Q4_0 but unsigned with a minimum: q · d + m.
    static func q4_1(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0), m = half(x, 2), qs = x + 4
        for j in 0..<16 {
            let q = byte(qs, j)
            y[j] = d * Float(q & 0x0F) + m
            y[j + 16] = d * Float(q >> 4) + m
        }
    }

    // Q5_0: the fifth bit of element j is bit j of the little-endian 32-bit qh; value (q - 16) · d.
    static func q5_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0), qh = x.loadUnaligned(fromByteOffset: 2, as: UInt32.self).littleEndian, qs = x + 6
        for j in 0..<16 {
            let q = byte(qs, j)
            let lo = Int(q & 0x0F) | Int((qh >> UInt32(j)) & 1) << 4
            let hi = Int(q >> 4) | Int((qh >> UInt32(j + 16)) & 1) << 4
            y[j] = Float(lo - 16) * d
            y[j + 16] = Float(hi - 16) * d
        }
    }

    // Q5_1: Q5_0's bits, unsigned with a minimum: q · d + m.
    static func q5_1(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0), m = half(x, 2), qh = x.loadUnaligned(fromByteOffset: 4, as: UInt32.self).littleEndian
        let qs = x + 8
        for j in 0..<16 {
            let q = byte(qs, j)
            let lo = Int(q & 0x0F) | Int((qh >> UInt32(j)) & 1) << 4
            let hi = Int(q >> 4) | Int((qh >> UInt32(j + 16)) & 1) << 4
            y[j] = d * Float(lo) + m
            y[j + 16] = d * Float(hi) + m
        }
    }

    // Q8_0: 32 signed bytes times d.
    static func q8_0(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0)
        for j in 0..<32 { y[j] = Float(Int8(bitPattern: byte(x, 2 + j))) * d }
    }

    /// Scale and minimum of sub-block `j` (0..<8) from the 12 packed bytes of Q4_K / Q5_K
    /// (`get_scale_min_k4`): sub-blocks 0-3 use 6 bits of bytes j and j+4; sub-blocks 4-7 take their
    /// low 4 bits from byte j+4 and their top 2 bits from the spare top bits of bytes j-4 and j.
    @inline(__always) static func scaleMin(_ s: UnsafeRawPointer, _ j: Int) -> (scale: UInt8, min: UInt8) {
        if j < 4 { return (byte(s, j) & 63, byte(s, j + 4) & 63) }
        let scale = (byte(s, j + 4) & 0x0F) | ((byte(s, j - 4) >> 6) << 4)
        let min = (byte(s, j + 4) >> 4) | ((byte(s, j) >> 6) << 4)
        return (scale, min)
    }

    // Q4_K: 8 sub-blocks of 32. The 4-bit values come in 4 chunks of 32 bytes; chunk c holds
    // sub-block 2c in its low nibbles and sub-block 2c+1 in its high nibbles. Value (d·scale)·q - dmin·min.
    static func q4_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0), dmin = half(x, 2), scales = x + 4, qs = x + 16
        for sub in 0..<8 {
            let (sc, m) = scaleMin(scales, sub)
            let d1 = d * Float(sc), m1 = dmin * Float(m)
            let chunk = qs + (sub / 2) * 32, shift = UInt8((sub % 2) * 4)
            for l in 0..<32 { y[sub * 32 + l] = d1 * Float((byte(chunk, l) >> shift) & 0x0F) - m1 }
        }
    }

    // Q5_K: Q4_K plus a fifth bit: bit `sub` of qh[l] belongs to element l of sub-block `sub`.
    static func q5_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(x, 0), dmin = half(x, 2), scales = x + 4, qh = x + 16, qs = x + 48
        for sub in 0..<8 {
            let (sc, m) = scaleMin(scales, sub)
            let d1 = d * Float(sc), m1 = dmin * Float(m)
            let chunk = qs + (sub / 2) * 32, shift = UInt8((sub % 2) * 4)
            for l in 0..<32 {
                let q = ((byte(chunk, l) >> shift) & 0x0F) | (((byte(qh, l) >> UInt8(sub)) & 1) << 4)
                y[sub * 32 + l] = d1 * Float(q) - m1
            }
        }
    }

    /// Where Q6_K keeps element e (0..<256) of a block: two halves of 128; in half h, element i < 64
    /// has its low 4 bits in the low nibble of ql[64h + i] and element 64 + i in the high nibble;
    /// element 32t + k has its top 2 bits at bits 2t..2t+1 of qh[32h + k] (ql at byte 0, qh at 128).
    /// The one statement of the layout, for its reader, its writer and the repacking.
    @inline(__always) static func q6KPlaces(_ e: Int) -> (low: Int, lowShift: UInt8, high: Int, highShift: UInt8) {
        let h = e / 128, i = e % 128
        return (64 * h + i % 64, i < 64 ? 0 : 4, 128 + 32 * h + i % 32, UInt8(2 * (i / 32)))
    }

    /// The unsigned 6-bit value q of Q6_K element e (the element is d · scale · (q − 32)).
    @inline(__always) static func q6KValue(_ x: UnsafeRawPointer, _ e: Int) -> Int {
        let p = q6KPlaces(e)
        return Int((byte(x, p.low) >> p.lowShift) & 15 | ((byte(x, p.high) >> p.highShift) & 3) << 4)
    }

    // Q6_K: 16 int8 scales at 192, one per 16 elements, d at 208; value (d·scale)·(q - 32).
    static func q6_K(_ x: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let scales = x + 192, d = half(x, 208)
        for e in 0..<256 {
            let scale = Float(Int8(bitPattern: byte(scales, e / 16)))
            y[e] = d * scale * Float(q6KValue(x, e) - 32)
        }
    }
}

/// Float32 rows to ggml blocks, for `--quantize` and `synthetic:NAME:TYPE`: Q8_0, Q4_0 and Q5_0 as
/// ggml's reference quantizers (`quantize_row_*_ref`); Q4_K with per-sub-block min/max ranges and
/// 6-bit scales, Q6_K with per-16 absolute-maximum scales (simpler than ggml's iterative searches,
/// same formats: any Q4_K/Q6_K reader reads them).
public enum Quantize {
    /// The types this engine can write.
    public static let writable: [GGMLType] = [.q8_0, .q4_0, .q5_0, .q4_K, .q6_K]

    /// The type a row of `count` elements is written in when `type` needs whole blocks it lacks:
    /// llama.cpp's fallback (Q4_K → Q5_0, Q6_K → Q8_0 for rows not a multiple of 256); nil when not even a block of
    /// 32 fits (the row stays float).
    public static func fallback(_ type: GGMLType, count: Int) -> GGMLType? {
        if count % type.blockSize == 0 { return type }
        guard count % 32 == 0 else { return nil }
        return type == .q4_K ? .q5_0 : type == .q6_K ? .q8_0 : type
    }

    /// Writes `count` elements of `x` as `type` blocks at `out` (`type.rowByteCount(count)` bytes).
    public static func row(_ type: GGMLType, _ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutableRawPointer) {
        precondition(writable.contains(type) && count % type.blockSize == 0, "cannot quantize \(count) elements to \(type.name)")
        for b in 0..<(count / type.blockSize) {
            let xb = x + b * type.blockSize, y = out + b * type.blockByteCount
            switch type {
            case .q8_0: q8_0(xb, y)
            case .q4_0: q4_0(xb, y)
            case .q5_0: q5_0(xb, y)
            case .q6_K: q6_K(xb, y)
            default: q4_K(xb, y)
            }
        }
    }

    static func storeHalf(_ y: UnsafeMutableRawPointer, _ offset: Int, _ v: Float) {
        y.storeBytes(of: floatToF16(v).littleEndian, toByteOffset: offset, as: UInt16.self)
    }

    static func q8_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for j in 0..<32 { amax = max(amax, abs(x[j])) }
        let d = amax / 127, id: Float = d != 0 ? 1 / d : 0
        storeHalf(y, 0, d)
        for j in 0..<32 { y.storeBytes(of: Int8((x[j] * id).rounded()), toByteOffset: 2 + j, as: Int8.self) }
    }

    static func q4_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0, extreme: Float = 0
        for j in 0..<32 where abs(x[j]) > amax { amax = abs(x[j]); extreme = x[j] }
        let d = extreme / -8, id: Float = d != 0 ? 1 / d : 0
        storeHalf(y, 0, d)
        for j in 0..<16 {
            let lo = UInt8(min(15, Int8(x[j] * id + 8.5))), hi = UInt8(min(15, Int8(x[j + 16] * id + 8.5)))
            y.storeBytes(of: lo | hi << 4, toByteOffset: 2 + j, as: UInt8.self)
        }
    }

    static func q5_0(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var amax: Float = 0, extreme: Float = 0
        for j in 0..<32 where abs(x[j]) > amax { amax = abs(x[j]); extreme = x[j] }
        let d = extreme / -16, id: Float = d != 0 ? 1 / d : 0
        storeHalf(y, 0, d)
        var qh: UInt32 = 0
        for j in 0..<16 {
            let lo = UInt8(min(31, Int8(x[j] * id + 16.5))), hi = UInt8(min(31, Int8(x[j + 16] * id + 16.5)))
            y.storeBytes(of: (lo & 15) | (hi & 15) << 4, toByteOffset: 6 + j, as: UInt8.self)
            qh |= UInt32(lo >> 4) << UInt32(j) | UInt32(hi >> 4) << UInt32(j + 16)
        }
        y.storeBytes(of: qh.littleEndian, toByteOffset: 2, as: UInt32.self)
    }

    static func q4_K(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var scales = [Float](repeating: 0, count: 8), mins = [Float](repeating: 0, count: 8)
        for sub in 0..<8 {
            var lo: Float = 0, hi = -Float.infinity
            for l in 0..<32 { lo = min(lo, x[sub * 32 + l]); hi = max(hi, x[sub * 32 + l]) }
            scales[sub] = max(0, (hi - lo) / 15); mins[sub] = -lo
        }
        let d = f16ToFloat(floatToF16(scales.max()! / 63)), dmin = f16ToFloat(floatToF16(mins.max()! / 63))
        storeHalf(y, 0, d); storeHalf(y, 2, dmin)
        let packed = y + 4
        for j in 0..<12 { packed.storeBytes(of: 0, toByteOffset: j, as: UInt8.self) }
        var sc = [UInt8](repeating: 0, count: 8), mn = [UInt8](repeating: 0, count: 8)
        for sub in 0..<8 {
            // Round the scale up so the sub-block's range still fits in 15 steps.
            sc[sub] = d > 0 ? UInt8(min(63, (scales[sub] / d).rounded(.up))) : 0
            mn[sub] = dmin > 0 ? UInt8(min(63, (mins[sub] / dmin).rounded())) : 0
            let ls = sc[sub], lm = mn[sub]
            func or(_ i: Int, _ v: UInt8) { packed.storeBytes(of: packed.load(fromByteOffset: i, as: UInt8.self) | v, toByteOffset: i, as: UInt8.self) }
            if sub < 4 { or(sub, ls); or(sub + 4, lm) } else {
                or(sub + 4, (ls & 15) | (lm & 15) << 4); or(sub - 4, (ls >> 4) << 6); or(sub, (lm >> 4) << 6)
            }
        }
        let qs = y + 16
        for c in 0..<4 { for l in 0..<32 { qs.storeBytes(of: 0, toByteOffset: c * 32 + l, as: UInt8.self) } }
        for sub in 0..<8 {
            let d1 = d * Float(sc[sub]), m1 = dmin * Float(mn[sub])
            for l in 0..<32 {
                let q = d1 > 0 ? UInt8(max(0, min(15, ((x[sub * 32 + l] + m1) / d1).rounded()))) : 0
                let i = (sub / 2) * 32 + l
                qs.storeBytes(of: qs.load(fromByteOffset: i, as: UInt8.self) | (sub % 2 == 0 ? q : q << 4), toByteOffset: i, as: UInt8.self)
            }
        }
    }

    /// Q6_K as ggml lays it out (see `Dequantize.q6_K`): each 16's scale maps its element of largest
    /// magnitude to −32; the 16 scales are int8 steps of d = (largest-magnitude scale) / −128.
    static func q6_K(_ x: UnsafePointer<Float>, _ y: UnsafeMutableRawPointer) {
        var scales = [Float](repeating: 0, count: 16)
        var maxScale: Float = 0
        for sub in 0..<16 {
            var amax: Float = 0, extreme: Float = 0
            for l in 0..<16 where abs(x[sub * 16 + l]) > amax { amax = abs(x[sub * 16 + l]); extreme = x[sub * 16 + l] }
            scales[sub] = extreme / -32
            if abs(scales[sub]) > abs(maxScale) { maxScale = scales[sub] }
        }
        let d = f16ToFloat(floatToF16(maxScale / -128))
        storeHalf(y, 208, d)
        for i in 0..<192 { y.storeBytes(of: 0, toByteOffset: i, as: UInt8.self) }
        for sub in 0..<16 {
            let sc = d != 0 ? Int8(max(-128, min(127, (scales[sub] / d).rounded()))) : 0
            y.storeBytes(of: sc, toByteOffset: 192 + sub, as: Int8.self)
            let step = d * Float(sc)
            for l in 0..<16 {
                let e = sub * 16 + l
                let q = step != 0 ? Int(max(-32, min(31, (x[e] / step).rounded()))) + 32 : 32
                let p = Dequantize.q6KPlaces(e)
                y.storeBytes(of: y.load(fromByteOffset: p.low, as: UInt8.self) | UInt8(q & 15) << p.lowShift, toByteOffset: p.low, as: UInt8.self)
                y.storeBytes(of: y.load(fromByteOffset: p.high, as: UInt8.self) | UInt8(q >> 4) << p.highShift, toByteOffset: p.high, as: UInt8.self)
            }
        }
    }
}
