import Foundation
import BanyanKernels
import CBanyanKernels
import BanyanKV

/// Head geometry of one attention layer.
public struct AttentionShape: Sendable {
    public let headCount: Int
    public let kvHeadCount: Int
    public let headDim: Int
    public init(headCount: Int, kvHeadCount: Int, headDim: Int) {
        self.headCount = headCount; self.kvHeadCount = kvHeadCount; self.headDim = headDim
    }
    public var groupSize: Int { headCount / kvHeadCount }
}

/// Running softmax state of each (row, head), reused across layers and steps (grown, never shrunk).
public final class AttentionScratch: @unchecked Sendable {
    private(set) var capacity = 0
    private(set) var runningMax: UnsafeMutablePointer<Float>
    private(set) var runningSum: UnsafeMutablePointer<Float>

    public init() {
        runningMax = .allocate(capacity: 1)
        runningSum = .allocate(capacity: 1)
    }
    deinit { runningMax.deallocate(); runningSum.deallocate() }

    func reserve(_ n: Int) {
        guard n > capacity else { return }
        runningMax.deallocate(); runningSum.deallocate()
        runningMax = .allocate(capacity: n)
        runningSum = .allocate(capacity: n)
        capacity = n
    }
}

/// Executes an `AttentionPlan` for one layer.
public enum Attention {
    /// `out[r, h, :] = softmax(q[r, h] · K_path(r)ᵀ) V_path(r)` for every row of the plan.
    /// `q`: `[rows, headCount, headDim]`, already scaled by 1/sqrt(headDim); `out`: same shape.
    /// Parallel over KV heads (and row slices when there are fewer KV heads than threads): each
    /// (row, head) is owned by one thread, so its merge order is fixed.
    public static func run(plan: AttentionPlan, q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                           kv: KVBlockPool, layer: Int, shape: AttentionShape,
                           scratch: AttentionScratch, threads: ThreadPool) {
        run(plan: plan, q: q, out: out, kv: kv, layer: layer, shape: shape, scratch: scratch, threads: threads,
            path: KernelDispatch.active)
    }

    /// `run` on an explicit kernel path (tests, benchmarks); `path` must be supported here.
    /// The AVX-512 and AVX2 kernels give the same bits; the portable one differs in rounding.
    /// K/V are read in the pool's dtype and widened exactly to float32, so the arithmetic (and with it
    /// hydragen == baseline and batch invariance) is the same for every KV dtype.
    public static func run(plan: AttentionPlan, q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                           kv: KVBlockPool, layer: Int, shape: AttentionShape,
                           scratch: AttentionScratch, threads: ThreadPool, path: KernelPath) {
        precondition(KernelDispatch.supports(path), "kernel path \(path) unsupported on this CPU")
        let rows = plan.rowCount, H = shape.headCount, D = shape.headDim, G = shape.groupSize
        out.update(repeating: 0, count: rows * H * D)
        guard plan.mode != .none, rows > 0 else { return }
        precondition(kv.layout.blockTokenCount == BlockKernel.blockTokens, "KV blocks must hold \(BlockKernel.blockTokens) tokens")
        scratch.reserve(rows * H)
        let m = scratch.runningMax, l = scratch.runningSum
        m.update(repeating: -.infinity, count: rows * H)
        l.update(repeating: 0, count: rows * H)
        // Rows are independent, so when KV heads don't divide evenly over the threads the rows are
        // also cut into slices; which slice a row lands in changes no arithmetic.
        let kvHeads = shape.kvHeadCount, T = threads.threadCount
        let dtype = kv.layout.dtype
        let kvType: Int32 = switch dtype {
        case .f32: Int32(BANYAN_W_F32)
        case .f16: Int32(BANYAN_W_F16)
        case .bf16: Int32(BANYAN_W_BF16)
        }
        // Slices are also capped at ~128 queries (rows × query heads of a KV head): a block's
        // queries are swept once per block, and their q and out rows must stay in L2 across the
        // sweep (at 512 queries the tiles ran at 0.7× the speed of 128; measured on Zen 3). Each
        // slice reads the blocks again, which costs bandwidth only when a prefix is huge.
        let sliceQueries = 128
        let sliceCount = max(kvHeads % T == 0 ? 1 : min(T, rows), min(rows, (rows * G + sliceQueries - 1) / sliceQueries))
        threads.parallelFor(kvHeads * sliceCount) { item in
            let kvHead = item / sliceCount, slice = item % sliceCount
            let r0 = slice * rows / sliceCount, r1 = (slice + 1) * rows / sliceCount
            for (t, task) in plan.tasks.enumerated() {
                // A task's rows ascend (the plan appends them in row order): the slice is a subrange.
                let lo = sliceCount == 1 ? 0 : lowerBound(task.rows, Int32(r0))
                let hi = sliceCount == 1 ? task.rows.count : lowerBound(task.rows, Int32(r1))
                if lo == hi { continue }
                let keys = kv.keys(task.block, layer: layer, kvHead: kvHead)
                let values = kv.values(task.block, layer: layer, kvHead: kvHead)
                switch path {
                case .avx512bf16, .avx512f, .avx2:
                    task.rows.withUnsafeBufferPointer { tr in
                        task.validCounts.withUnsafeBufferPointer { tv in
                            let kernel = path == .avx2 ? banyan_attention_block_avx2 : banyan_attention_block_avx512
                            // The next task's block, for the kernel to prefetch while it computes this one,
                            // unless an earlier task read it (then it is in cache; measured on Zen 3 with
                            // scripts/attention_harness.c: prefetching cached blocks costs calls of 3-12 queries
                            // 2-5%, prefetching cold ones gains them 10-25%).
                            let next = t + 1 < plan.tasks.count && plan.tasks[t + 1].firstRead ? plan.tasks[t + 1].block : nil
                            kernel(tr.baseAddress! + lo, tv.baseAddress! + lo, hi - lo, q, keys, values, kvType, out, m, l,
                                   H, D, G, kvHead, next.map { UnsafeRawPointer(kv.keys($0, layer: layer, kvHead: kvHead)) },
                                   next.map { UnsafeRawPointer(kv.values($0, layer: layer, kvHead: kvHead)) })
                        }
                    }
                case .portable:
                    switch dtype {
                    case .f32:
                        BlockKernel.apply(Float.self, task: task, slots: lo..<hi, keys: keys, values: values, q: q, out: out,
                                          runningMax: m, runningSum: l, kvHead: kvHead, shape: shape)
                    case .bf16:
                        BlockKernel.apply(BF16Element.self, task: task, slots: lo..<hi, keys: keys, values: values, q: q, out: out,
                                          runningMax: m, runningSum: l, kvHead: kvHead, shape: shape)
                    case .f16:
                        BlockKernel.apply(Float16.self, task: task, slots: lo..<hi, keys: keys, values: values, q: q, out: out,
                                          runningMax: m, runningSum: l, kvHead: kvHead, shape: shape)
                    }
                }
            }
            // Normalise this slice's query heads of this KV head.
            for r in r0..<r1 {
                for g in 0..<G {
                    let h = kvHead * G + g
                    let inv = 1 / l[r * H + h]
                    let o = out + (r * H + h) * D
                    for d in 0..<D { o[d] *= inv }
                }
            }
        }
    }

    /// First index of ascending `a` whose element is ≥ `x`.
    @inline(__always)
    static func lowerBound(_ a: [Int32], _ x: Int32) -> Int {
        var lo = 0, hi = a.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if a[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}

/// A stored K/V element type of the portable kernel: loads widen exactly to float32.
protocol KVElement {
    /// 16 elements from element `i` of `p`.
    static func load16(_ p: UnsafeRawPointer, _ i: Int) -> SIMD16<Float>
    static func load(_ p: UnsafeRawPointer, _ i: Int) -> Float
}

extension Float: KVElement {
    @inline(__always) static func load16(_ p: UnsafeRawPointer, _ i: Int) -> SIMD16<Float> {
        SIMD16<Float>(UnsafeBufferPointer(start: p.assumingMemoryBound(to: Float.self) + i, count: 16))
    }
    @inline(__always) static func load(_ p: UnsafeRawPointer, _ i: Int) -> Float { p.assumingMemoryBound(to: Float.self)[i] }
}

/// bf16 bits (`UInt16` storage): widening is a 16-bit left shift.
enum BF16Element: KVElement {
    @inline(__always) static func load16(_ p: UnsafeRawPointer, _ i: Int) -> SIMD16<Float> {
        let h = SIMD16<UInt16>(UnsafeBufferPointer(start: p.assumingMemoryBound(to: UInt16.self) + i, count: 16))
        return unsafeBitCast(SIMD16<UInt32>(truncatingIfNeeded: h) &<< 16, to: SIMD16<Float>.self)
    }
    @inline(__always) static func load(_ p: UnsafeRawPointer, _ i: Int) -> Float { bf16ToFloat(p.assumingMemoryBound(to: UInt16.self)[i]) }
}

extension Float16: KVElement {
    @inline(__always) static func load16(_ p: UnsafeRawPointer, _ i: Int) -> SIMD16<Float> {
        let h = SIMD16<UInt16>(UnsafeBufferPointer(start: p.assumingMemoryBound(to: UInt16.self) + i, count: 16))
        return SIMD16<Float>(unsafeBitCast(h, to: SIMD16<Float16>.self))
    }
    @inline(__always) static func load(_ p: UnsafeRawPointer, _ i: Int) -> Float { f16ToFloat(p.assumingMemoryBound(to: UInt16.self)[i]) }
}

/// The portable (Swift SIMD) per-block partial softmax and LSE merge, for 32-token blocks; the C
/// kernels in CBanyanKernels/attention_x86.c do the same with FMAs. Scores are one multiply-add
/// chain over the head dimension per (query, key) pair, so a query's result never depends on which
/// other queries share the block; queries are processed four at a time to reuse each loaded key
/// vector. Products and sums are separate operations (`addingProduct` is a libm call per lane on
/// targets without FMA).
enum BlockKernel {
    static let blockTokens = 32

    /// Queries of the task's rows `slots` (indices into `task.rows`) against one block.
    @inline(__always)
    static func apply<E: KVElement>(_: E.Type, task: AttentionPlan.Task, slots: Range<Int>, keys: UnsafeRawPointer, values: UnsafeRawPointer,
                      q: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>,
                      runningMax: UnsafeMutablePointer<Float>, runningSum: UnsafeMutablePointer<Float>,
                      kvHead: Int, shape: AttentionShape) {
        let H = shape.headCount, D = shape.headDim, G = shape.groupSize
        let queryCount = slots.count * G
        // Flattened query index i -> (row, head).
        @inline(__always) func head(_ i: Int) -> (row: Int, head: Int, valid: Int) {
            let t = slots.lowerBound + i / G
            return (Int(task.rows[t]), kvHead * G + i % G, Int(task.validCounts[t]))
        }
        var i = 0
        while i < queryCount {
            let n = min(4, queryCount - i)
            var s0 = (SIMD16<Float>(), SIMD16<Float>()), s1 = s0, s2 = s0, s3 = s0
            let h0 = head(i), h1 = head(i + min(1, n - 1)), h2 = head(i + min(2, n - 1)), h3 = head(i + min(3, n - 1))
            let q0 = q + (h0.row * H + h0.head) * D, q1 = q + (h1.row * H + h1.head) * D
            let q2 = q + (h2.row * H + h2.head) * D, q3 = q + (h3.row * H + h3.head) * D
            for d in 0..<D {
                let ka = E.load16(keys, d * blockTokens), kb = E.load16(keys, d * blockTokens + 16)
                let a0 = SIMD16<Float>(repeating: q0[d]), a1 = SIMD16<Float>(repeating: q1[d])
                let a2 = SIMD16<Float>(repeating: q2[d]), a3 = SIMD16<Float>(repeating: q3[d])
                s0.0 += a0 * ka; s0.1 += a0 * kb
                s1.0 += a1 * ka; s1.1 += a1 * kb
                s2.0 += a2 * ka; s2.1 += a2 * kb
                s3.0 += a3 * ka; s3.1 += a3 * kb
            }
            merge(E.self, s0, h0, values: values, out: out, runningMax: runningMax, runningSum: runningSum, H: H, D: D)
            if n > 1 { merge(E.self, s1, h1, values: values, out: out, runningMax: runningMax, runningSum: runningSum, H: H, D: D) }
            if n > 2 { merge(E.self, s2, h2, values: values, out: out, runningMax: runningMax, runningSum: runningSum, H: H, D: D) }
            if n > 3 { merge(E.self, s3, h3, values: values, out: out, runningMax: runningMax, runningSum: runningSum, H: H, D: D) }
            i += n
        }
    }

    /// Partial softmax of one query over the block's first `valid` keys, merged into its running state.
    @inline(__always)
    static func merge<E: KVElement>(_: E.Type, _ s: (SIMD16<Float>, SIMD16<Float>), _ at: (row: Int, head: Int, valid: Int),
                      values: UnsafeRawPointer, out: UnsafeMutablePointer<Float>,
                      runningMax: UnsafeMutablePointer<Float>, runningSum: UnsafeMutablePointer<Float>, H: Int, D: Int) {
        let lane = SIMD16<Int32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
        let valid = Int32(at.valid)
        let sa = s.0.replacing(with: -.infinity, where: lane .>= valid)
        let sb = s.1.replacing(with: -.infinity, where: (lane &+ 16) .>= valid)
        let blockMax = max(sa.max(), sb.max())
        let pa = simdExp(sa - blockMax), pb = simdExp(sb - blockMax)
        let blockSum = (pa + pb).sum()
        let idx = at.row * H + at.head
        let oldMax = runningMax[idx]
        let newMax = max(oldMax, blockMax)
        let alpha = Foundation.exp(oldMax - newMax)  // 0 on the first block (oldMax = -inf)
        let beta = Foundation.exp(blockMax - newMax)
        runningMax[idx] = newMax
        runningSum[idx] = runningSum[idx] * alpha + blockSum * beta
        let o = out + idx * D
        for d in 0..<D { o[d] *= alpha }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 32) { p in
            for j in 0..<16 { p[j] = pa[j] * beta; p[j + 16] = pb[j] * beta }
            var d = 0
            while d + 16 <= D {
                var acc = SIMD16<Float>(UnsafeBufferPointer(start: o + d, count: 16))
                for j in 0..<at.valid {
                    acc += p[j] * E.load16(values, j * D + d)
                }
                for t in 0..<16 { o[d + t] = acc[t] }
                d += 16
            }
            while d < D {
                var acc = o[d]
                for j in 0..<at.valid { acc += p[j] * E.load(values, j * D + d) }
                o[d] = acc
                d += 1
            }
        }
    }
}
