import CBanyanKernels

/// `out[m, n] = Σ_k x[m, k] · W[n, k]` for `m < rows`: activations `x` `[rows, W.cols]` float32,
/// weights in their stored type widened exactly (quantized ones as ggml dequantizes them), float32
/// accumulation, `out` `[rows, W.rows]`.
/// Each output element's bits are independent of `rows`, of its position and of the thread
/// count (batch invariance depends on it): one vector FMA chain over k, then a fixed tree.
public func matmul(_ x: UnsafePointer<Float>, rows: Int, weight: WeightMatrix,
                   out: UnsafeMutablePointer<Float>, pool: ThreadPool) {
    matmul(x, rows: rows, weight: weight, out: out, pool: pool, path: KernelDispatch.active)
}

/// `matmul` on an explicit kernel path (tests, benchmarks); `path` must be supported here.
public func matmul(_ x: UnsafePointer<Float>, rows: Int, weight: WeightMatrix,
                   out: UnsafeMutablePointer<Float>, pool: ThreadPool, path: KernelPath) {
    precondition(KernelDispatch.supports(path), "kernel path \(path) unsupported on this CPU")
    if rows <= 0 || weight.rows == 0 { return }
    let n = weight.rows, k = weight.cols
    let columns = MatmulBlocking.columnsPerTask(rows: rows, weight: weight, threadCount: pool.threadCount)
    let taskCount = (n + columns - 1) / columns
    if weight.quantized != nil {
        // Exact products of a quantized matrix: each task widens its rows to float32 (as ggml
        // dequantizes them) and runs the float kernel on them; an element's bits are those a
        // widened copy of the whole matrix would give, without keeping one (4 bytes per weight).
        pool.parallelFor(taskCount) { task in
            let n0 = task * columns, count = min(n, n0 + columns) - n0
            let widened = UnsafeMutablePointer<Float>.allocate(capacity: count * k)
            defer { widened.deallocate() }
            weight.widenRows(n0, count: count, into: widened)
            matmulColumns(x, rows: rows, weight: WeightMatrix(dtype: .f32, rows: count, cols: k, base: widened),
                          columns: 0..<count, out: out + n0, ldo: n, path: path)
        }
        return
    }
    pool.parallelFor(taskCount) { task in
        let n0 = task * columns
        matmulColumns(x, rows: rows, weight: weight, columns: n0..<min(n, n0 + columns), out: out, ldo: n, path: path)
    }
}

/// One task of `matmul`: output columns `columns` of a float `weight` on `path`, rows of `out` `ldo` apart.
private func matmulColumns(_ x: UnsafePointer<Float>, rows: Int, weight: WeightMatrix, columns: Range<Int>,
                           out: UnsafeMutablePointer<Float>, ldo: Int, path: KernelPath) {
    let k = weight.cols, n0 = columns.lowerBound, n1 = columns.upperBound
    switch path {
    case .avx512bf16, .avx512f:
        banyan_matmul_avx512(x, rows, k, weight.base, weight.dtype.cCode, n0, n1, out, ldo)
    case .avx2:
        banyan_matmul_avx2(x, rows, k, weight.base, weight.dtype.cCode, n0, n1, out, ldo)
    case .portable:
        matmulPortable(x, rows: rows, weight: weight, columns: columns, out: out, ldo: ldo)
    }
}

/// How `matmul` splits output columns into tasks. Only speed depends on it, never bits.
enum MatmulBlocking {
    /// Columns of W handled by one task: a multiple of 24 (the tile widths 3, 4 and 8 divide it).
    /// GEMV wants ~4 tasks per thread for balance; M > 1 also keeps a task's weight block
    /// (columns × K) within ~512 KiB of L2 so it is reused by every row tile.
    static func columnsPerTask(rows: Int, weight: WeightMatrix, threadCount: Int) -> Int {
        let n = weight.rows
        let balanced = (n + 4 * threadCount - 1) / (4 * threadCount)
        var columns = balanced
        if rows > 1 {
            let rowBytes = max(1, weight.cols * weight.dtype.byteCount)
            columns = min(columns, max(1, (512 << 10) / rowBytes))
        }
        return max(24, (columns + 23) / 24 * 24)
    }
}

extension DType {
    /// Weight type code shared with CBanyanKernels.
    var cCode: Int32 {
        switch self {
        case .f32: Int32(BANYAN_W_F32)
        case .f16: Int32(BANYAN_W_F16)
        case .bf16: Int32(BANYAN_W_BF16)
        }
    }
}

/// "Fast precision" matmul: each x row rounded to bf16 (nearest even), bf16 weights, AVX-512
/// `vdpbf16ps` with float32 accumulation. Same shapes and the same batch invariance as `matmul`
/// (one vdpbf16ps chain per element over k in steps of 32, then a fixed tree); bits differ from
/// `matmul`. Requires `KernelDispatch.fastMatmulAvailable` and a bf16 weight (callers check
/// both when the precision is chosen).
public func matmulFast(_ x: UnsafePointer<Float>, rows: Int, weight: WeightMatrix,
                       out: UnsafeMutablePointer<Float>, pool: ThreadPool) {
    precondition(KernelDispatch.fastMatmulAvailable, "matmulFast needs AVX512_BF16")
    precondition(weight.dtype == .bf16, "matmulFast needs bf16 weights, got \(weight.dtype)")
    if rows <= 0 || weight.rows == 0 { return }
    let n = weight.rows, k = weight.cols
    let columns = MatmulBlocking.columnsPerTask(rows: rows, weight: weight, threadCount: pool.threadCount)
    let w = weight.base.assumingMemoryBound(to: UInt16.self)
    pool.parallelFor((n + columns - 1) / columns) { task in
        let n0 = task * columns
        banyan_matmul_fast_bf16(x, rows, k, w, n0, min(n, n0 + columns), out, n)
    }
}
