/// A read-only view of a row-major weight matrix `[rows = outFeatures, cols = inFeatures]` in its
/// stored type (usually memory-mapped from a checkpoint). The memory is owned elsewhere.
public struct WeightMatrix: @unchecked Sendable {
    /// Element type of a float matrix (`f32` for a quantized one, whose `base` holds ggml blocks).
    public let dtype: DType
    public let rows: Int
    public let cols: Int
    public let base: UnsafeRawPointer
    /// The rows in ggml block format when the matrix is quantized (`base` is then `quantized.base`);
    /// nil for float matrices.
    public let quantized: QuantizedRows?
    /// The same quantized rows repacked for the integer-product kernels (`quantizedMatmul`).
    public let packed: PackedWeights?

    public init(dtype: DType, rows: Int, cols: Int, base: UnsafeRawPointer) {
        self.dtype = dtype; self.rows = rows; self.cols = cols; self.base = base; quantized = nil; packed = nil
    }

    /// A quantized matrix: its ggml rows and their packed copy (nil where the type has no kernel).
    public init(rows: Int, cols: Int, quantized: QuantizedRows, packed: PackedWeights?) {
        dtype = .f32; self.rows = rows; self.cols = cols; base = quantized.base
        self.quantized = quantized; self.packed = packed
    }

    /// Bytes as stored (ggml blocks for a quantized matrix).
    public var byteCount: Int { quantized.map { $0.rowByteCount * rows } ?? rows * cols * dtype.byteCount }

    /// Rows `r0..<r0+count` widened to float32 into `out` (`[count, cols]`).
    public func widenRows(_ r0: Int, count: Int, into out: UnsafeMutablePointer<Float>) {
        for r in 0..<count { copyRow(r0 + r, into: out + r * cols) }
    }

    /// Element `[r, c]` widened to Float (slow; for references and gathers such as embeddings).
    @inlinable
    public func element(_ r: Int, _ c: Int) -> Float {
        if let q = quantized {
            let n = q.type.blockSize, block = [Float](unsafeUninitializedCapacity: n) { buf, count in
                Dequantize.row(q.type, q.base + r * q.rowByteCount + c / n * q.type.blockByteCount, count: n, into: buf.baseAddress!)
                count = n
            }
            return block[c % n]
        }
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
        if let q = quantized {
            Dequantize.row(q.type, q.base + r * q.rowByteCount, count: cols, into: out)
            return
        }
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
