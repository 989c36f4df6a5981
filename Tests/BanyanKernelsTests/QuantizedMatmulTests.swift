import Testing
@testable import BanyanKernels
import BanyanTestSupport

/// Random ggml blocks of `type` for a `[rows, cols]` matrix: random bytes (every bit pattern of the
/// integer fields is a valid value) with the half-float scale fields set to sane magnitudes.
func randomBlocks(_ type: GGMLType, rows: Int, cols: Int, rng: inout SeededRNG) -> [UInt8] {
    let blocks = rows * cols / type.blockSize
    var bytes = (0..<(blocks * type.blockByteCount)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    let halves: [Int] = switch type {
    case .q8_0, .q4_0, .q5_0: [0]
    case .q4_1, .q5_1, .q4_K, .q5_K: [0, 2]
    case .q6_K: [208]
    case .f32, .f16, .bf16: []
    }
    for b in 0..<blocks {
        for (i, offset) in halves.enumerated() {
            // d in ±[0.001, 0.01]; the second half (m or dmin) positive or negative as the format allows.
            let v = (0.001 + 0.009 * abs(rng.float())) * (rng.next() & 1 == 0 ? 1 : -1) * (i == 1 && type.blockSize == 256 ? 0.5 : 1)
            let h = floatToF16(v)
            bytes[b * type.blockByteCount + offset] = UInt8(h & 0xFF)
            bytes[b * type.blockByteCount + offset + 1] = UInt8(h >> 8)
        }
    }
    return bytes
}

/// The activations the kernels multiply: each row quantized per 32 as `banyan_quantize_rows` does
/// (d = amax / 127, q = rint(x · 127 / amax)), returned dequantized (d · q) and with the d per block.
func quantizedActivations(_ x: [Float], rows: Int, k: Int) -> (values: [Float], scales: [Float]) {
    var values = x, scales = [Float]()
    for r in 0..<rows {
        for b in 0..<(k / 32) {
            let range = (r * k + b * 32)..<(r * k + b * 32 + 32)
            let amax = x[range].map(abs).max()!
            let d = amax / 127, id: Float = amax > 0 ? 127 / amax : 0
            for i in range { values[i] = d * (x[i] * id).rounded(.toNearestOrEven) }
            scales.append(d)
        }
    }
    return (values, scales)
}

func runQuantizedMatmul(_ x: [Float], rows: Int, weight: PackedWeights, pool: ThreadPool, path: KernelPath) -> [Float] {
    var out = [Float](repeating: .nan, count: rows * weight.rows)
    x.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { quantizedMatmul(xp.baseAddress!, rows: rows, weight: weight, out: $0.baseAddress!, pool: pool, path: path) }
    }
    return out
}

@Suite struct QuantizedMatmulTests {
    static let types: [GGMLType] = [.q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    /// Every packed type against a Double reference on its own activations. The kernel multiplies the
    /// dequantized weights W by the 8-bit activations x̂ (what `quantizedActivations` returns), so
    /// against W·x̂ only float32 rounding remains: per sub-block one product d·scale, one conversion
    /// (exact: |isum| < 2²⁴) and one or two FMAs into the accumulator, i.e. ≤ (2·nsub + 2)·2⁻²⁴ of
    /// Σ|W·x̂| (we allow 2·nsub + 4). Against the float x, the quantization of x adds at most
    /// Σ_b (d_b / 2)·Σ_{i∈b}|W_i| (rounding to the nearest multiple of d_b), checked as a bound too.
    /// Also: the AVX2 path gives the portable path's bits, and each row's bits do not depend on the
    /// other rows of the batch.
    @Test(arguments: types)
    func matchesReference(type: GGMLType) throws {
        var rng = SeededRNG(seed: 0x0A11_0000 + UInt64(type.rawValue))
        let pool = ThreadPool(threadCount: 2)
        for (n, k) in [(1, 256), (13, 256), (24, 512), (37, 768)] {
            var blocks = randomBlocks(type, rows: n, cols: k, rng: &rng)
            let rowBytes = type.rowByteCount(k)!
            try blocks.withUnsafeMutableBytes { raw in
                let base = UnsafeRawPointer(raw.baseAddress!)
                let packed = try #require(PackedWeights(type: type, rows: n, cols: k, blocks: base, rowByteCount: rowBytes, pool: pool))
                let w = WeightMatrix(rows: n, cols: k, quantized: QuantizedRows(type: type, base: base, rowByteCount: rowBytes), packed: packed)
                for rows in [1, 2, 3, 4, 5, 9] {
                    var x = rng.floats(rows * k, scale: 2)
                    if rows > 2 { for i in 0..<32 { x[k + i] = 0 } }   // an all-zero activation block
                    let (xhat, scales) = quantizedActivations(x, rows: rows, k: k)
                    let ref = referenceMatmul(xhat, rows: rows, weight: w)
                    let nsub = k / (type == .q6_K ? 16 : 32)
                    var results: [KernelPath: [Float]] = [:]
                    for path in [KernelPath.portable, .avx2] where KernelDispatch.supports(path) {
                        let got = runQuantizedMatmul(x, rows: rows, weight: packed, pool: pool, path: path)
                        results[path] = got
                        var worst = 0.0, worstX = 0.0
                        for m in 0..<rows {
                            for j in 0..<n {
                                let i = m * n + j
                                let err = abs(Double(got[i]) - ref.values[i])
                                worst = max(worst, err / (Double(2 * nsub + 4) * 0x1p-24 * ref.magnitudes[i] + 1e-30))
                                var quantization = 0.0, exact = 0.0
                                for c in 0..<k {
                                    let wv = Double(w.element(j, c))
                                    quantization += Double(scales[m * (k / 32) + c / 32]) / 2 * abs(wv)
                                    exact += Double(x[m * k + c]) * wv
                                }
                                let bound = quantization * 1.000001 + Double(2 * nsub + 4) * 0x1p-24 * ref.magnitudes[i] + 1e-30
                                worstX = max(worstX, abs(Double(got[i]) - exact) / bound)
                            }
                        }
                        #expect(worst <= 1, "\(type.name) \(path) n \(n) k \(k) rows \(rows): error/bound \(worst)")
                        #expect(worstX <= 1, "\(type.name) \(path) n \(n) k \(k) rows \(rows): error vs float x / bound \(worstX)")
                    }
                    if let a = results[.avx2], let p = results[.portable] {
                        #expect(a.map(\.bitPattern) == p.map(\.bitPattern), "\(type.name) avx2 bits differ from portable, n \(n) k \(k) rows \(rows)")
                    }
                    // Batch invariance: each row alone gives the bits it got inside the batch.
                    let batch = try #require(results[KernelDispatch.supports(.avx2) ? .avx2 : .portable])
                    for m in [0, rows - 1] {
                        let alone = runQuantizedMatmul(Array(x[(m * k)..<((m + 1) * k)]), rows: 1, weight: packed, pool: pool,
                                                       path: KernelDispatch.active)
                        #expect(alone.map(\.bitPattern) == batch[(m * n)..<((m + 1) * n)].map(\.bitPattern),
                                "\(type.name) row \(m) of \(rows) differs alone")
                    }
                }
            }
        }
    }

    /// The exact path of a quantized matrix (`matmul`, rows widened on the fly) gives the bits of the
    /// float kernel on a widened copy of the whole matrix.
    @Test func exactPathEqualsWidenedCopy() throws {
        var rng = SeededRNG(seed: 0x0A12)
        let pool = ThreadPool(threadCount: 2)
        let (n, k, type) = (40, 512, GGMLType.q4_K)
        var blocks = randomBlocks(type, rows: n, cols: k, rng: &rng)
        try blocks.withUnsafeMutableBytes { raw in
            let q = QuantizedRows(type: type, base: UnsafeRawPointer(raw.baseAddress!), rowByteCount: type.rowByteCount(k)!)
            let w = WeightMatrix(rows: n, cols: k, quantized: q, packed: nil)
            var widened = [Float](repeating: 0, count: n * k)
            widened.withUnsafeMutableBufferPointer { w.widenRows(0, count: n, into: $0.baseAddress!) }
            for rows in [1, 7] {
                let x = rng.floats(rows * k)
                for path in KernelDispatch.supportedPaths {
                    let got = runMatmul(x, rows: rows, weight: w, pool: pool, path: path)
                    let want = try widened.withUnsafeBytes { wb in
                        runMatmul(x, rows: rows, weight: WeightMatrix(dtype: .f32, rows: n, cols: k, base: try #require(wb.baseAddress)),
                                  pool: pool, path: path)
                    }
                    #expect(got.map(\.bitPattern) == want.map(\.bitPattern), "\(path) rows \(rows)")
                }
            }
        }
    }

    /// The quantizers' round trip stays within each format's step: Q8_0 and Q4_0 round to the
    /// nearest of 255 / 16 levels of d (Q4_0 clamps one side, see below) (plus d's own f16 rounding, ≤ 2⁻¹¹ relative, times the
    /// largest level); Q4_K to 16 levels of d·scale offset by dmin·min, each 6-bit rounded; Q6_K to 64
    /// levels of an int8 multiple of d per 16.
    @Test(arguments: Quantize.writable)
    func quantizerRoundTrip(type: GGMLType) {
        var rng = SeededRNG(seed: 0x0A13 + UInt64(type.rawValue))
        let k = 1024
        var x = rng.floats(k, scale: 0.05)
        for i in 0..<32 { x[256 + i] = 0 }   // a zero block
        for i in 0..<32 { x[512 + i] = 0.3 + Float(i) * 1e-3 }   // an offset, all-positive block
        var bytes = [UInt8](repeating: 0, count: type.rowByteCount(k)!)
        var back = [Float](repeating: .nan, count: k)
        x.withUnsafeBufferPointer { xp in bytes.withUnsafeMutableBytes { Quantize.row(type, xp.baseAddress!, count: k, into: $0.baseAddress!) } }
        bytes.withUnsafeBytes { b in back.withUnsafeMutableBufferPointer { Dequantize.row(type, b.baseAddress!, count: k, into: $0.baseAddress!) } }
        for blockStart in stride(from: 0, to: k, by: type.blockSize) {
            let xs = x[blockStart..<(blockStart + type.blockSize)]
            let amax = Double(xs.map(abs).max()!)
            let lo = Double(min(0, xs.min()!)), hi = Double(xs.max()!)
            let step: Double = switch type {
            case .q8_0: amax / 127
            case .q4_0: amax / 8
            case .q5_0: amax / 16
            default: (hi - lo) / 15 + amax / 63   // sub-block range / 15, scale rounded up by ≤ d
            }
            for i in xs.indices {
                let err = abs(Double(back[i]) - Double(x[i]))
                if type == .q6_K {
                    // Its 16's scale maps the 16's largest magnitude a16 to −32 (step a16 / 32); the int8 scale
                    // moves the step by ≤ d / 2 (d = the block's largest step / 128, f16-rounded), which moves a
                    // level by ≤ 32 · d / 2; the side opposite the extreme clamps at +31, a step away.
                    let sub = x[(i / 16 * 16)..<(i / 16 * 16 + 16)], a16 = Double(sub.map(abs).max()!)
                    let d = amax / 32 / 128, clamped = abs(Double(x[i])) > a16 * 31 / 32
                    let bound = (a16 / 32 * (clamped ? 1 : 0.5) + 16 * d) * 1.01 + 1e-12
                    #expect(err <= bound, "Q6_K element \(i): |\(back[i]) - \(x[i])| = \(err) > \(bound)")
                    continue
                }
                // Q4_0's levels run from -8d to 7d (d = the extreme / -8; Q5_0's from -16d to 15d): values beyond 7|d| on the other
                // side clamp to 7d, up to one full step away.
                let clamped = (type == .q4_0 && abs(Double(x[i])) > amax * 7 / 8) || (type == .q5_0 && abs(Double(x[i])) > amax * 15 / 16)
                let bound = step * (clamped ? 1 : 0.5) * 1.01 + amax * 0x1p-10 + (type == .q4_K ? amax / 63 : 0) + 1e-12
                #expect(err <= bound, "\(type.name) element \(i): |\(back[i]) - \(x[i])| = \(err) > \(bound)")
            }
        }
    }
}

/// The AVX2 activation quantizer gives the portable one's bits: round-half-even ties, zero and
/// single-value blocks, mixed magnitudes and signs, a value at ±amax.
@Suite struct ActivationQuantizerTests {
    @Test func avx2MatchesPortable() throws {
        guard KernelDispatch.supports(.avx2) else { return }
        var rng = SeededRNG(seed: 0x51AB)
        let k = 256, rows = 7
        var x = rng.floats(rows * k, scale: 3)
        for i in 0..<32 { x[i] = 0 }                                   // an all-zero block
        for i in 0..<32 { x[32 + i] = Float(i % 7) - 3.5 }            // amax 3.5: ties at ±0.5 steps after scaling by 127/3.5
        x[64] = 127; for i in 1..<32 { x[64 + i] = Float(i) + 0.5 }    // amax 127: x · 1 has exact .5 ties
        for i in 0..<32 { x[96 + i] = -0.0 }; x[100] = 1e-30           // one tiny value among negative zeros
        for i in 0..<32 { x[k + i] = Float(i) * (i % 2 == 0 ? 1e6 : -1e-6) }  // wide range
        for i in 0..<32 { x[2 * k + i] = -2 }                          // equal negatives
        let pool = ThreadPool(threadCount: 2)
        let (p, a) = x.withUnsafeBufferPointer { xp in
            (QuantizedActivations(xp.baseAddress!, rows: rows, k: k, path: .portable, pool: pool),
             QuantizedActivations(xp.baseAddress!, rows: rows, k: k, path: .avx2, pool: pool))
        }
        let nb = rows * k / 32
        #expect(Array(UnsafeBufferPointer(start: p.q, count: rows * k)) == Array(UnsafeBufferPointer(start: a.q, count: rows * k)))
        #expect((0..<nb).allSatisfy { p.d[$0].bitPattern == a.d[$0].bitPattern }, "scales differ")
        #expect((0..<nb).allSatisfy { p.dsum[$0].bitPattern == a.dsum[$0].bitPattern }, "d · Σq differ")
        #expect(Array(UnsafeBufferPointer(start: p.sum16, count: 2 * nb)) == Array(UnsafeBufferPointer(start: a.sum16, count: 2 * nb)))
        // The ties really are ties: 0.5 rounds to 0, 1.5 to 2, 2.5 to 2 (x · 1 with amax 127).
        #expect(Array(UnsafeBufferPointer(start: p.q + 65, count: 3)) == [2, 2, 4])
    }
}

/// Rows that are not whole K-quant blocks take llama.cpp's fallback type (llama-quant.cpp:
/// Q4_K → Q5_0, Q6_K → Q8_0); rows that are not whole blocks of 32 stay float.
@Test func quantizeFallbackTypes() {
    #expect(Quantize.fallback(.q4_K, count: 2048) == .q4_K)
    #expect(Quantize.fallback(.q6_K, count: 2048) == .q6_K)
    #expect(Quantize.fallback(.q4_K, count: 576) == .q5_0)
    #expect(Quantize.fallback(.q6_K, count: 576) == .q8_0)
    #expect(Quantize.fallback(.q8_0, count: 576) == .q8_0)
    #expect(Quantize.fallback(.q6_K, count: 40) == nil)
}
