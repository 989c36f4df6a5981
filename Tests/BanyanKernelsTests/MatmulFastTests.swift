import Testing
import BanyanKernels
import BanyanTestSupport

@Suite struct MatmulFastTests {
    func runFast(_ x: [Float], rows: Int, weight: WeightMatrix, pool: ThreadPool) -> [Float] {
        var out = [Float](repeating: .nan, count: rows * weight.rows)
        x.withUnsafeBufferPointer { xp in
            out.withUnsafeMutableBufferPointer { op in
                matmulFast(xp.baseAddress!, rows: rows, weight: weight, out: op.baseAddress!, pool: pool)
            }
        }
        return out
    }

    /// Against the Double reference with x rounded to bf16 first (products of two bf16 are exact in
    /// float32). vdpbf16ps adds two products per lane per step, a chain of ⌈K/32⌉ steps, then a
    /// depth-4 tree: |error| ≤ (2⌈K/32⌉ + 6)·u·Σ|x·w|; we allow (⌈K/16⌉ + 8)·2⁻²³·Σ|x·w|.
    /// Also checks batch invariance (rows alone vs in a batch, 1 vs 3 threads).
    @Test(.enabled(if: KernelDispatch.fastMatmulAvailable))
    func matchesReferenceAndInvariant() {
        let seed: UInt64 = 0xFA57
        print("matmulFast seed \(seed)")
        var rng = SeededRNG(seed: seed)
        let pools = [ThreadPool(threadCount: 1), ThreadPool(threadCount: 3)]
        // k = 2081 > 1536 runs the K-blocked path (accumulators spilled between 1024-wide blocks).
        for (k, n) in [(k: 1, n: 3), (k: 31, n: 9), (k: 33, n: 25), (k: 200, n: 51), (k: 1043, n: 29), (k: 2081, n: 10)] {
            var bytes = randomWeightBytes(.bf16, rows: n, cols: k, scale: 1, rng: &rng)
            bytes.withUnsafeMutableBytes { raw in
                let w = WeightMatrix(dtype: .bf16, rows: n, cols: k, base: UnsafeRawPointer(raw.baseAddress!))
                for rows in [1, 2, 3, 8, 17, 64] {
                    let x = rng.floats(rows * k, scale: 2)
                    let got = runFast(x, rows: rows, weight: w, pool: pools[1])
                    let ref = referenceMatmul(x.map { bf16ToFloat(floatToBF16($0)) }, rows: rows, weight: w)
                    let bound = Double((k + 15) / 16 + 8) * 0x1p-23
                    var worst = 0.0
                    for i in 0..<(rows * n) {
                        worst = max(worst, abs(Double(got[i]) - ref.values[i]) / (bound * ref.magnitudes[i] + 1e-30))
                    }
                    #expect(worst <= 1, "rows \(rows) k \(k) n \(n): error/bound \(worst)")
                    for m in [0, rows - 1] {
                        let alone = runFast(Array(x[(m * k)..<((m + 1) * k)]), rows: 1, weight: w, pool: pools[0])
                        #expect(alone.map(\.bitPattern) == got[(m * n)..<((m + 1) * n)].map(\.bitPattern),
                                "rows \(rows) k \(k) row \(m)")
                    }
                }
            }
        }
    }
}
