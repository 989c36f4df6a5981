import Foundation
import Testing
import BanyanKernels
import BanyanTestSupport

/// Row kernels of the forward pass against plain Double references on random shapes (odd sizes
/// included). Each output is a handful of float32 operations on values ≤ 1 in magnitude, so a
/// relative error of a few float32 ulps (1e-6) bounds them; 1e-5 leaves room for the mean's sum.
@Suite("Elementwise kernels")
struct ElementwiseTests {
    static let dims = [1, 7, 16, 33, 64, 100, 2048, 5633]

    @Test("RMSNorm equals x / sqrt(mean(x²) + eps) · w", arguments: dims)
    func rmsNorm(_ dim: Int) {
        var rng = SeededRNG(seed: UInt64(dim))
        print("ElementwiseTests seed \(dim)")
        let rows = 3
        let x = rng.floats(rows * dim), w = rng.floats(dim)
        var out = [Float](repeating: 0, count: rows * dim)
        Elementwise.rmsNorm(x, weight: w, out: &out, rows: rows, dim: dim, epsilon: 1e-5)
        for r in 0..<rows {
            let row = x[(r * dim)..<((r + 1) * dim)].map(Double.init)
            let scale = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(dim) + 1e-5).squareRoot()
            for i in 0..<dim {
                let ref = row[i] * scale * Double(w[i])
                #expect(abs(Double(out[r * dim + i]) - ref) <= 1e-5 * max(1, abs(ref)))
            }
        }
    }

    @Test("rotate-half RoPE equals the rotation of each (i, i + half) pair", arguments: [1, 4, 32, 40, 64])
    func rope(_ half: Int) {
        var rng = SeededRNG(seed: UInt64(100 + half))
        let x0 = rng.floats(2 * half)
        let angles = (0..<half).map { _ in Double(rng.float(100)) }
        let cs = angles.map { Float(cos($0)) }, sn = angles.map { Float(sin($0)) }
        var x = x0
        Elementwise.rotateHalf(&x, cos: cs, sin: sn, half: half, scale: 0.5)
        for i in 0..<half {
            let a = Double(x0[i]), b = Double(x0[i + half]), c = Double(cs[i]), s = Double(sn[i])
            #expect(abs(Double(x[i]) - (a * c - b * s) * 0.5) <= 1e-6)
            #expect(abs(Double(x[i + half]) - (b * c + a * s) * 0.5) <= 1e-6)
        }
    }

    @Test("log-softmax sums to one and matches the Double formula", arguments: [1, 2, 31, 512, 32000])
    func logSoftmax(_ n: Int) {
        var rng = SeededRNG(seed: UInt64(n))
        let x = rng.floats(n, scale: 20)
        var out = [Float](repeating: 0, count: n)
        Elementwise.logSoftmax(x, count: n, out: &out)
        let m = Double(x.max()!)
        let lse = m + log(x.reduce(0.0) { $0 + exp(Double($1) - m) })
        for i in 0..<n { #expect(abs(Double(out[i]) - (Double(x[i]) - lse)) <= 1e-5 * max(1, abs(Double(x[i]) - lse))) }
        #expect(abs(out.reduce(0.0) { $0 + exp(Double($1)) } - 1) < 1e-5)
    }

    @Test("SiLU·up equals g·sigmoid(g)·u", arguments: [1, 17, 5632])
    func silu(_ n: Int) {
        var rng = SeededRNG(seed: UInt64(n))
        let g0 = rng.floats(n, scale: 8), u = rng.floats(n)
        var g = g0
        Elementwise.siluMultiply(&g, u, count: n)
        for i in 0..<n {
            let ref = Double(g0[i]) / (1 + exp(-Double(g0[i]))) * Double(u[i])
            #expect(abs(Double(g[i]) - ref) <= 1e-6 * max(1, abs(ref)))
        }
    }

    @Test("vector exp is within a few ulps of exp, and 0 far below the clamp")
    func vectorExp() {
        var rng = SeededRNG(seed: 5)
        for _ in 0..<2000 {
            let v = SIMD16<Float>((0..<16).map { _ in rng.float(87) })
            let e = simdExp(v)
            for i in 0..<16 {
                let ref = exp(Double(v[i]))
                #expect(abs(Double(e[i]) - ref) <= 4e-7 * ref)
            }
        }
        #expect(simdExp(SIMD16(repeating: -.infinity)) == SIMD16(repeating: 0))
        #expect(simdExp(SIMD16(repeating: 0)) == SIMD16(repeating: 1))
    }
}
