import BanyanKernels

/// Slow matmul reference: `out[m, n] = Σ_k x[m, k] · W[n, k]` accumulated in Double, and the
/// magnitude `Σ_k |x[m, k] · W[n, k]|` that bounds float32 rounding error. Both `[rows, W.rows]`.
public func referenceMatmul(_ x: [Float], rows: Int, weight: WeightMatrix) -> (values: [Double], magnitudes: [Double]) {
    let k = weight.cols, n = weight.rows
    var values = [Double](repeating: 0, count: rows * n)
    var magnitudes = [Double](repeating: 0, count: rows * n)
    for m in 0..<rows {
        for j in 0..<n {
            var sum = 0.0, magnitude = 0.0
            for i in 0..<k {
                let p = Double(x[m * k + i]) * Double(weight.element(j, i))
                sum += p
                magnitude += abs(p)
            }
            values[m * n + j] = sum
            magnitudes[m * n + j] = magnitude
        }
    }
    return (values, magnitudes)
}

/// Random weights `[rows, cols]` stored as `dtype` (values uniform in ±scale before rounding).
/// The returned bytes back a `WeightMatrix`; keep them alive while it is used.
public func randomWeightBytes(_ dtype: DType, rows: Int, cols: Int, scale: Float,
                              rng: inout SeededRNG) -> [UInt8] {
    let count = rows * cols
    var bytes = [UInt8](repeating: 0, count: count * dtype.byteCount)
    bytes.withUnsafeMutableBytes { raw in
        switch dtype {
        case .f32:
            let p = raw.bindMemory(to: Float.self)
            for i in 0..<count { p[i] = rng.float(scale) }
        case .bf16:
            let p = raw.bindMemory(to: UInt16.self)
            for i in 0..<count { p[i] = floatToBF16(rng.float(scale)) }
        case .f16:
            let p = raw.bindMemory(to: UInt16.self)
            for i in 0..<count { p[i] = floatToF16(rng.float(scale)) }
        }
    }
    return bytes
}
