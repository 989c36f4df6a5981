/// Element type of a stored tensor (weights, KV). Activations are always `Float`.
public enum DType: String, Sendable, CaseIterable, Codable {
    case f32, f16, bf16

    /// Bytes per element.
    public var byteCount: Int { self == .f32 ? 4 : 2 }
}

/// bfloat16 <-> float32. bf16 is the top half of an IEEE float32, so widening is a shift;
/// narrowing rounds to nearest even (NaN stays NaN) as PyTorch does.
@inlinable @inline(__always)
public func bf16ToFloat(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

@inlinable @inline(__always)
public func floatToBF16(_ x: Float) -> UInt16 {
    let u = x.bitPattern
    if x.isNaN { return UInt16(truncatingIfNeeded: (u >> 16) | 0x40) }
    let rounding = UInt32(0x7FFF) &+ ((u >> 16) & 1)
    return UInt16(truncatingIfNeeded: (u &+ rounding) >> 16)
}

@inlinable @inline(__always)
public func f16ToFloat(_ bits: UInt16) -> Float {
    #if arch(x86_64) || arch(arm64)
    return Float(Float16(bitPattern: bits))
    #else
    return Float(Float16(bitPattern: bits))
    #endif
}

@inlinable @inline(__always)
public func floatToF16(_ x: Float) -> UInt16 { Float16(x).bitPattern }

/// float32 -> f16 (nearest even) clamped to f16's finite range: values that would round to ±inf
/// become ±65504 (the KV cache's defined behaviour out of range); NaN stays NaN.
@inlinable @inline(__always)
public func floatToF16Saturating(_ x: Float) -> UInt16 {
    Float16(Swift.min(Swift.max(x, -65504), 65504)).bitPattern
}
