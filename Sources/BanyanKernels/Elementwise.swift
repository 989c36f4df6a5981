import Foundation

/// Small row-wise kernels of the forward pass. Each works on float32 activations and computes a row
/// the same way whatever the batch, so results are batch-invariant.
public enum Elementwise {
    /// `out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight` for `rows` rows of `dim` (HF LlamaRMSNorm, float32).
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                               rows: Int, dim: Int, epsilon: Float) {
        for r in 0..<rows {
            let xr = x + r * dim, o = out + r * dim
            var acc = SIMD16<Float>()
            var i = 0
            while i + 16 <= dim {
                let v = SIMD16<Float>(UnsafeBufferPointer(start: xr + i, count: 16))
                acc += v * v  // not addingProduct: without FMA that is a libm fmaf call per lane
                i += 16
            }
            var sum = acc.sum()
            while i < dim { sum += xr[i] * xr[i]; i += 1 }
            let scale = 1 / (sum / Float(dim) + epsilon).squareRoot()
            for j in 0..<dim { o[j] = (xr[j] * scale) * weight[j] }
        }
    }

    /// RoPE in transformers' `rotate_half` layout on one head vector `x[0..<2·half]`: dimension i
    /// pairs with i + half; the result is multiplied by `scale` (1/sqrt(headDim) folded into queries).
    @inline(__always)
    public static func rotateHalf(_ x: UnsafeMutablePointer<Float>, cos cs: UnsafePointer<Float>, sin sn: UnsafePointer<Float>,
                                  half: Int, scale: Float) {
        for i in 0..<half {
            let a = x[i], b = x[i + half]
            x[i] = (a * cs[i] - b * sn[i]) * scale
            x[i + half] = (b * cs[i] + a * sn[i]) * scale
        }
    }

    /// `x[i] += y[i]` (residual connection).
    public static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { x[i] += y[i] }
    }

    /// `gate[i] = silu(gate[i]) * up[i]` (SwiGLU).
    public static func siluMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        for i in 0..<count {
            let g = gate[i]
            gate[i] = g / (1 + Foundation.exp(-g)) * up[i]
        }
    }

    /// Log-softmax of one row, accumulated in Double: `out[i] = x[i] - logsumexp(x)`.
    public static func logSoftmax(_ x: UnsafePointer<Float>, count: Int, out: UnsafeMutablePointer<Float>) {
        var m = -Float.infinity
        for i in 0..<count { m = max(m, x[i]) }
        var s = 0.0
        for i in 0..<count { s += Foundation.exp(Double(x[i] - m)) }
        let lse = Double(m) + Foundation.log(s)
        for i in 0..<count { out[i] = Float(Double(x[i]) - lse) }
    }
}

/// Vectorised `exp` for 16 floats (Cephes-style range reduction and a degree-6 polynomial,
/// ≈2 ulp). Deterministic: the same input gives the same bits on every path; the C attention
/// kernels (`exp512`/`exp256` in attention_x86.c) are the same operations.
@inlinable
public func simdExp(_ x: SIMD16<Float>) -> SIMD16<Float> {
    let clamped = x.clamped(lowerBound: SIMD16(repeating: -87.3), upperBound: SIMD16(repeating: 88.3))
    let n = (clamped * 1.442695040888963).rounded(.toNearestOrEven)
    // Cephes' two-step ln 2 (no FMA needed: n · 0.693359375 is exact for |n| ≤ 128).
    var r = clamped + n * -0.693359375
    r = r + n * 2.12194440e-4
    var p = SIMD16<Float>(repeating: 1.9875691500e-4)
    p = (p * r) + 1.3981999507e-3
    p = (p * r) + 8.3334519073e-3
    p = (p * r) + 4.1665795894e-2
    p = (p * r) + 1.6666665459e-1
    p = (p * r) + 5.0000001201e-1
    let r2 = r * r
    var y = (p * r2) + r + 1
    let bits = (SIMD16<Int32>(n) &+ 127) &<< 23
    y = y * unsafeBitCast(bits, to: SIMD16<Float>.self)
    // Below the clamp the true value underflows to 0 (needed for masked -inf scores).
    return y.replacing(with: 0, where: x .< -87.3)
}
