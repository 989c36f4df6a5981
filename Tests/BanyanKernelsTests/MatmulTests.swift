import Testing
import BanyanKernels
import BanyanTestSupport

/// Runs `matmul` on `path` with weights `w` (bytes of `dtype`), returning `out` `[rows, n]`.
func runMatmul(_ x: [Float], rows: Int, weight: WeightMatrix, pool: ThreadPool, path: KernelPath) -> [Float] {
    var out = [Float](repeating: .nan, count: rows * weight.rows)
    x.withUnsafeBufferPointer { xp in
        out.withUnsafeMutableBufferPointer { op in
            matmul(xp.baseAddress!, rows: rows, weight: weight, out: op.baseAddress!, pool: pool, path: path)
        }
    }
    return out
}

@Suite struct MatmulTests {
    static let rowCounts = [1, 2, 3, 5, 8, 17, 64, 130]

    /// Against the Double reference on random shapes (K, N deliberately not multiples of 8/16/24).
    /// Tolerance: each element is a float32 FMA chain of ⌈K/L⌉ steps per lane (L = 16 or 8) plus a
    /// tree of depth ≤ 4, so |error| ≤ (⌈K/8⌉ + 5)·u·Σ|x·w| with u = 2⁻²⁴ (one more u per product
    /// on the unfused portable path; weights widen exactly). We allow (⌈K/8⌉ + 6)·2⁻²³·Σ|x·w|.
    @Test(arguments: DType.allCases)
    func matchesReference(dtype: DType) {
        let seed: UInt64 = 0x5EED_0000 + UInt64(DType.allCases.firstIndex(of: dtype)!)
        print("matmul reference seed \(seed) dtype \(dtype)")
        var rng = SeededRNG(seed: seed)
        let pool = ThreadPool(threadCount: 2)
        let shapes = [(k: 1, n: 1), (k: 15, n: 7), (k: 16, n: 24), (k: 37, n: 29), (k: 200, n: 51),
                      (k: 777, n: 50), (k: 1030, n: 26)]
        for (k, n) in shapes {
            var bytes = randomWeightBytes(dtype, rows: n, cols: k, scale: 1, rng: &rng)
            for rows in Self.rowCounts {
                let x = rng.floats(rows * k, scale: 2)
                bytes.withUnsafeMutableBytes { raw in
                    let w = WeightMatrix(dtype: dtype, rows: n, cols: k, base: UnsafeRawPointer(raw.baseAddress!))
                    let ref = referenceMatmul(x, rows: rows, weight: w)
                    let bound = Double((k + 7) / 8 + 6) * 0x1p-23
                    for path in KernelDispatch.supportedPaths {
                        let got = runMatmul(x, rows: rows, weight: w, pool: pool, path: path)
                        var worst = 0.0
                        for i in 0..<(rows * n) {
                            let err = abs(Double(got[i]) - ref.values[i])
                            worst = max(worst, err / (bound * ref.magnitudes[i] + 1e-30))
                        }
                        #expect(worst <= 1, "\(path) \(dtype) rows \(rows) k \(k) n \(n): error/bound \(worst)")
                    }
                }
            }
        }
    }

    /// Batch invariance: a row's output bits do not depend on how many rows ride along, where
    /// the row sits in its tile, or the thread count.
    @Test(arguments: DType.allCases)
    func batchInvariant(dtype: DType) {
        let seed: UInt64 = 0x1A7A_0000 + UInt64(DType.allCases.firstIndex(of: dtype)!)
        print("matmul invariance seed \(seed) dtype \(dtype)")
        var rng = SeededRNG(seed: seed)
        let pools = [1, 2, 3].map { ThreadPool(threadCount: $0) }
        // K > 768 exercises the K-blocked (spilled accumulator) path for rows > 1.
        for (k, n) in [(k: 100, n: 61), (k: 1043, n: 77)] {
            var bytes = randomWeightBytes(dtype, rows: n, cols: k, scale: 1, rng: &rng)
            bytes.withUnsafeMutableBytes { raw in
                let w = WeightMatrix(dtype: dtype, rows: n, cols: k, base: UnsafeRawPointer(raw.baseAddress!))
                for path in KernelDispatch.supportedPaths {
                    let rows = 19
                    let x = rng.floats(rows * k, scale: 1)
                    let full = runMatmul(x, rows: rows, weight: w, pool: pools[1], path: path)
                    for m in 0..<rows {
                        let alone = runMatmul(Array(x[(m * k)..<((m + 1) * k)]), rows: 1, weight: w,
                                              pool: pools[m % 3], path: path)
                        let inBatch = Array(full[(m * n)..<((m + 1) * n)])
                        #expect(alone.map(\.bitPattern) == inBatch.map(\.bitPattern), "\(path) \(dtype) k \(k) row \(m)")
                    }
                    // Sub-batches at other offsets and sizes, other thread counts.
                    for (start, count, pool) in [(3, 5, pools[0]), (1, 9, pools[2]), (10, 9, pools[0])] {
                        let part = runMatmul(Array(x[(start * k)..<((start + count) * k)]), rows: count,
                                             weight: w, pool: pool, path: path)
                        let inBatch = Array(full[(start * n)..<((start + count) * n)])
                        #expect(part.map(\.bitPattern) == inBatch.map(\.bitPattern), "\(path) \(dtype) k \(k) rows \(start)+\(count)")
                    }
                }
            }
        }
    }
}
