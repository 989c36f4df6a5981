/// A read-only view of a row-major weight matrix `[rows = outFeatures, cols = inFeatures]` in its
/// stored dtype (usually memory-mapped from a checkpoint). The memory is owned elsewhere.
public struct WeightMatrix: @unchecked Sendable {
    public let dtype: DType
    public let rows: Int
    public let cols: Int
    public let base: UnsafeRawPointer
    /// The same rows still in ggml block format when the matrix was widened from a quantized GGUF
    /// tensor (`base` then points at the float32 copy the current kernels run); nil otherwise.
    public let quantized: QuantizedRows?

    public init(dtype: DType, rows: Int, cols: Int, base: UnsafeRawPointer, quantized: QuantizedRows? = nil) {
        self.dtype = dtype; self.rows = rows; self.cols = cols; self.base = base; self.quantized = quantized
    }

    /// Element `[r, c]` widened to Float (slow; for references and gathers such as embeddings).
    @inlinable
    public func element(_ r: Int, _ c: Int) -> Float {
        let i = r * cols + c
        switch dtype {
        case .f32: return base.assumingMemoryBound(to: Float.self)[i]
        case .bf16: return bf16ToFloat(base.assumingMemoryBound(to: UInt16.self)[i])
        case .f16: return f16ToFloat(base.assumingMemoryBound(to: UInt16.self)[i])
        }
    }

    /// Copies row `r` widened to Float into `out[0..<cols]` (embedding lookup).
    @inlinable
    public func copyRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        let i = r * cols
        switch dtype {
        case .f32:
            out.update(from: base.assumingMemoryBound(to: Float.self) + i, count: cols)
        case .bf16:
            let p = base.assumingMemoryBound(to: UInt16.self) + i
            for c in 0..<cols { out[c] = bf16ToFloat(p[c]) }
        case .f16:
            let p = base.assumingMemoryBound(to: UInt16.self) + i
            for c in 0..<cols { out[c] = f16ToFloat(p[c]) }
        }
    }
}
