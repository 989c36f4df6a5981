import Foundation
import Testing
import BanyanKernels
import BanyanKV
import BanyanAttention
import BanyanTestSupport

/// A random prefix tree of KV segments in a real `KVCache`: every node's tokens are appended once to
/// the sequence that reaches it, and children are forks (full blocks shared, partial block copied).
struct RandomTree {
    let cache: KVCache
    var leaves: [SequenceID] = []

    /// `depth` levels; node lengths in `lengths`; fan-out per internal node in `fanOut`.
    init(layout: KVLayout, depth: Int, fanOut: ClosedRange<Int>, lengths: ClosedRange<Int>, rng: inout SeededRNG) throws {
        cache = KVCache(pool: try KVBlockPool(layout: layout, budgetBytes: 1 << 30))
        var frontier = [cache.createSequence()]
        for level in 0..<depth {
            var next: [SequenceID] = []
            for s in frontier {
                let children = level == 0 ? 1 : Int.random(in: fanOut, using: &rng)
                for c in 0..<children {
                    let child = c == children - 1 ? s : try cache.fork(s)
                    try RandomTree.fill(cache, child, count: Int.random(in: lengths, using: &rng), rng: &rng)
                    next.append(child)
                }
            }
            frontier = next
        }
        leaves = frontier
    }

    /// Appends `count` positions of random K/V (all layers, all heads) to `s`, stored (rounded) in the
    /// layout's dtype as `Model.forward` stores them.
    static func fill(_ cache: KVCache, _ s: SequenceID, count: Int, rng: inout SeededRNG) throws {
        let start = try cache.append(s, count: count)
        let L = cache.layout, C = L.blockTokenCount
        let blocks = cache.blocks(s)
        var k = [Float](repeating: 0, count: L.headDim), v = k
        for p in start..<(start + count) {
            for layer in 0..<L.layerCount {
                for h in 0..<L.kvHeadCount {
                    for d in 0..<L.headDim {
                        k[d] = rng.float()
                        v[d] = rng.float()
                    }
                    cache.pool.store(key: k, value: v, block: blocks[p / C], slot: p % C, layer: layer, kvHead: h)
                }
            }
        }
    }
}

/// Plain attention in Double over a row's whole path: the slow, obvious reference. It reads the K/V
/// values as stored (rounded to the cache's dtype), so it checks the kernels, not the rounding.
func referenceAttention(cache: KVCache, row: AttentionRow, q: UnsafePointer<Float>, shape: AttentionShape, layer: Int) -> [Double] {
    let C = cache.layout.blockTokenCount, D = shape.headDim, G = shape.groupSize
    let pool = cache.pool
    var out = [Double](repeating: 0, count: shape.headCount * D)
    for h in 0..<shape.headCount {
        let kvh = h / G
        var scores = [Double](repeating: 0, count: row.position + 1)
        for j in 0...row.position {
            var s = 0.0
            for d in 0..<D {
                s += Double(q[h * D + d]) * Double(pool.storedKey(row.blocks[j / C], layer: layer, kvHead: kvh, slot: j % C, dim: d))
            }
            scores[j] = s
        }
        let m = scores.max()!
        let w = scores.map { exp($0 - m) }
        let total = w.reduce(0, +)
        for j in 0...row.position {
            let weight = w[j] / total
            for d in 0..<D {
                out[h * D + d] += weight * Double(pool.storedValue(row.blocks[j / C], layer: layer, kvHead: kvh, slot: j % C, dim: d))
            }
        }
    }
    return out
}

func runAttention(_ rows: [AttentionRow], q: [Float], cache: KVCache, shape: AttentionShape, mode: AttentionMode,
                  threads: Int, layer: Int = 0, path: KernelPath = KernelDispatch.active) -> [Float] {
    let plan = AttentionPlan(rows: rows, blockTokenCount: cache.layout.blockTokenCount, mode: mode)
    var out = [Float](repeating: .nan, count: rows.count * shape.headCount * shape.headDim)
    q.withUnsafeBufferPointer { qp in
        out.withUnsafeMutableBufferPointer { op in
            Attention.run(plan: plan, q: qp.baseAddress!, out: op.baseAddress!, kv: cache.pool, layer: layer, shape: shape,
                          scratch: AttentionScratch(), threads: ThreadPool(threadCount: threads), path: path)
        }
    }
    return out
}

@Suite("Hydragen attention")
struct HydragenTests {
    struct Case: Sendable, CustomStringConvertible {
        let seed: UInt64, depth: Int, fanOut: ClosedRange<Int>, lengths: ClosedRange<Int>, kvHeads: Int, group: Int, headDim: Int
        var description: String { "seed \(seed) depth \(depth) fan-out \(fanOut) lengths \(lengths) kvHeads \(kvHeads) group \(group) D \(headDim)" }
    }

    // Depths 1–4, fan-outs up to 64, node lengths 1–3000 (so odd valid counts in last blocks), MHA and
    // GQA groups 1–8, head dims 8–128: 8 and 24 exercise the masked tails (< 16, 16 + 8), 80 = 64 + 16.
    static let cases: [Case] = [
        Case(seed: 1, depth: 1, fanOut: 1...1, lengths: 1...40, kvHeads: 2, group: 1, headDim: 64),
        Case(seed: 2, depth: 2, fanOut: 64...64, lengths: 1...20, kvHeads: 1, group: 4, headDim: 64),
        Case(seed: 3, depth: 2, fanOut: 8...16, lengths: 2000...3000, kvHeads: 1, group: 8, headDim: 128),
        Case(seed: 4, depth: 3, fanOut: 2...6, lengths: 1...100, kvHeads: 2, group: 2, headDim: 80),
        Case(seed: 5, depth: 4, fanOut: 1...3, lengths: 1...300, kvHeads: 2, group: 1, headDim: 128),
        Case(seed: 6, depth: 4, fanOut: 2...3, lengths: 30...33, kvHeads: 1, group: 8, headDim: 80),
        Case(seed: 7, depth: 2, fanOut: 1...1, lengths: 3000...3000, kvHeads: 2, group: 3, headDim: 64),
        Case(seed: 8, depth: 3, fanOut: 3...7, lengths: 1...70, kvHeads: 3, group: 1, headDim: 8),
        Case(seed: 9, depth: 3, fanOut: 2...9, lengths: 5...77, kvHeads: 1, group: 5, headDim: 32),
        Case(seed: 10, depth: 2, fanOut: 11...11, lengths: 33...95, kvHeads: 2, group: 2, headDim: 24),
        // MHA with 20–40 sequences on one prefix: its blocks go through the GEMM-shaped tiles (f32 and
        // bf16 widened into scratch from 16 and 32 queries, bf16 in place below, f16 always in place),
        // the private tails and baseline's per-sequence reads through the query pairs. The GQA cases
        // (groups 3–8) send baseline's reads and a row alone through the in-place tiles too, so every
        // pair of AVX2 paths meets in one of the bitwise comparisons.
        Case(seed: 11, depth: 2, fanOut: 20...40, lengths: 1...200, kvHeads: 2, group: 1, headDim: 128),
    ]

    /// One path per distinct kernel this CPU runs (avx512bf16 and avx512f share the attention kernel).
    static let paths: [KernelPath] = [.avx512f, .avx2, .portable].filter(KernelDispatch.supports)

    /// A kernel path and the KV element type it reads.
    struct Variant: Sendable, CustomStringConvertible {
        let path: KernelPath, dtype: DType
        var description: String { "\(path) \(dtype) KV" }
    }

    /// Every path with every KV dtype: each widens its loads, the arithmetic is the same.
    static let variants: [Variant] = paths.flatMap { p in DType.allCases.map { Variant(path: p, dtype: $0) } }

    @Test("decode over a random tree equals plain attention (float64), bitwise equal to baseline", arguments: cases, variants)
    func decodeTree(_ c: Case, variant: Variant) throws {
        let path = variant.path
        print("HydragenTests seed \(c.seed) \(variant)")
        var rng = SeededRNG(seed: c.seed)
        let layout = KVLayout(layerCount: 2, kvHeadCount: c.kvHeads, headDim: c.headDim, dtype: variant.dtype)
        let tree = try RandomTree(layout: layout, depth: c.depth, fanOut: c.fanOut, lengths: c.lengths, rng: &rng)
        let shape = AttentionShape(headCount: c.kvHeads * c.group, kvHeadCount: c.kvHeads, headDim: c.headDim)
        let rows = tree.leaves.map { AttentionRow(sequence: $0, blocks: tree.cache.blocks($0), position: tree.cache.length($0) - 1) }
        let q = rng.floats(rows.count * shape.headCount * c.headDim, scale: 0.5)
        let hydragen = runAttention(rows, q: q, cache: tree.cache, shape: shape, mode: .hydragen, threads: 2, layer: 1, path: path)
        let baseline = runAttention(rows, q: q, cache: tree.cache, shape: shape, mode: .baseline, threads: 1, layer: 1, path: path)
        // Same per-row arithmetic by construction: batching changes which rows share a block read, never the math.
        #expect(hydragen == baseline)

        // Float32 scores of |q·k| ≤ D/4 and a blockwise online softmax: relative error per output
        // ~ (D + log2(len))·eps ≈ 1e-5 of the output scale (values ≤ 1); 1e-4 absolute is ample and
        // still far below any real disagreement (a wrong block or mask moves outputs by ~1e-2).
        // The reference uses the stored (rounded) K/V, and widening them is exact, so the same bound
        // holds for 16-bit KV: a kernel that widened wrongly (or read the wrong bytes) moves outputs by ≫ 1e-4.
        var worst = 0.0
        let width = shape.headCount * c.headDim
        q.withUnsafeBufferPointer { qp in
            for (r, row) in rows.enumerated() {
                let ref = referenceAttention(cache: tree.cache, row: row, q: qp.baseAddress! + r * width, shape: shape, layer: 1)
                for i in 0..<width { worst = max(worst, abs(ref[i] - Double(hydragen[r * width + i]))) }
            }
        }
        #expect(worst < 1e-4, "max abs error \(worst)")

        // Batch invariance: a row computed alone gives the same bits as within the whole batch.
        for r in [0, rows.count / 2, rows.count - 1] {
            let alone = runAttention([rows[r]], q: Array(q[(r * width)..<((r + 1) * width)]), cache: tree.cache, shape: shape,
                                     mode: .hydragen, threads: 1, layer: 1, path: path)
            #expect(alone == Array(hydragen[(r * width)..<((r + 1) * width)]))
        }
    }

    @Test("causal prefill rows over a shared prefix equal the reference", arguments: variants)
    func prefillRows(variant: Variant) throws {
        let path = variant.path
        var rng = SeededRNG(seed: 42)
        print("HydragenTests seed 42 \(variant)")
        let layout = KVLayout(layerCount: 1, kvHeadCount: 2, headDim: 64, dtype: variant.dtype)
        let tree = try RandomTree(layout: layout, depth: 2, fanOut: 3...3, lengths: 50...90, rng: &rng)
        let shape = AttentionShape(headCount: 4, kvHeadCount: 2, headDim: 64)
        // Every position of every leaf from 40 on is a query row (what a prefill of the suffixes does).
        var rows: [AttentionRow] = []
        for s in tree.leaves {
            for p in 40..<tree.cache.length(s) { rows.append(AttentionRow(sequence: s, blocks: tree.cache.blocks(s), position: p)) }
        }
        let width = shape.headCount * shape.headDim
        let q = rng.floats(rows.count * width, scale: 0.5)
        let out = runAttention(rows, q: q, cache: tree.cache, shape: shape, mode: .hydragen, threads: 2, path: path)
        #expect(out == runAttention(rows, q: q, cache: tree.cache, shape: shape, mode: .baseline, threads: 2, path: path))
        var worst = 0.0
        q.withUnsafeBufferPointer { qp in
            for (r, row) in rows.enumerated() {
                let ref = referenceAttention(cache: tree.cache, row: row, q: qp.baseAddress! + r * width, shape: shape, layer: 0)
                for i in 0..<width { worst = max(worst, abs(ref[i] - Double(out[r * width + i]))) }
            }
        }
        #expect(worst < 1e-4, "max abs error \(worst)")
    }

    @Test("the C kernels agree with the portable path; AVX-512 and AVX2 give the same bits",
          arguments: [8, 24, 64, 80, 128], DType.allCases)
    func pathsAgree(headDim: Int, dtype: DType) throws {
        let seed = UInt64(100 + headDim)
        print("HydragenTests seed \(seed) \(dtype) KV")
        var rng = SeededRNG(seed: seed)
        let layout = KVLayout(layerCount: 1, kvHeadCount: 2, headDim: headDim, dtype: dtype)
        let tree = try RandomTree(layout: layout, depth: 3, fanOut: 2...5, lengths: 1...90, rng: &rng)
        let shape = AttentionShape(headCount: 6, kvHeadCount: 2, headDim: headDim)
        let rows = tree.leaves.map { AttentionRow(sequence: $0, blocks: tree.cache.blocks($0), position: tree.cache.length($0) - 1) }
        let q = rng.floats(rows.count * shape.headCount * headDim, scale: 0.5)
        let portable = runAttention(rows, q: q, cache: tree.cache, shape: shape, mode: .hydragen, threads: 2, path: .portable)
        var results: [KernelPath: [Float]] = [:]
        for path in HydragenTests.paths where path != .portable {
            let out = runAttention(rows, q: q, cache: tree.cache, shape: shape, mode: .hydragen, threads: 2, path: path)
            // Paths differ only in rounding (FMA vs separate multiply-add in the score and PV chains):
            // a few ulp of the output scale (values ≤ 1) per step, far below 1e-5.
            let worst = zip(out, portable).map { abs($0 - $1) }.max()!
            #expect(worst < 1e-5, "\(path) vs portable: max abs difference \(worst)")
            results[path] = out
        }
        // Same operations in the same order, only the vector width differs.
        if let a = results[.avx512f], let b = results[.avx2] { #expect(a == b) }
    }

    @Test("the plan batches shared blocks once and keeps each row's blocks in position order")
    func planStructure() throws {
        var rng = SeededRNG(seed: 9)
        let layout = KVLayout(layerCount: 1, kvHeadCount: 1, headDim: 16)
        let cache = KVCache(pool: try KVBlockPool(layout: layout, budgetBytes: 1 << 24))
        let root = cache.createSequence()
        try RandomTree.fill(cache, root, count: 100, rng: &rng)  // 3 full blocks + 4 tokens
        let kids = try (0..<5).map { _ in try cache.fork(root) }
        for k in kids { try RandomTree.fill(cache, k, count: 10, rng: &rng) }
        let rows = kids.map { AttentionRow(sequence: $0, blocks: cache.blocks($0), position: cache.length($0) - 1) }
        let hydra = AttentionPlan(rows: rows, blockTokenCount: 32, mode: .hydragen)
        let base = AttentionPlan(rows: rows, blockTokenCount: 32, mode: .baseline)
        // 3 shared full blocks read once each + one private last block per child.
        #expect(hydra.tasks.count == 3 + 5)
        #expect(hydra.sharedTaskCount == 3)
        #expect(base.tasks.count == 5 * 4)
        #expect(hydra.tasks.map(\.blockIndex) == hydra.tasks.map(\.blockIndex).sorted())
        // Prefetch hints: hydragen meets every block once; baseline meets the 3 shared blocks cold
        // only in the first sequence's walk, and each child's own block once.
        let hydraCold = hydra.tasks.map(\.firstRead), baseCold = base.tasks.map(\.firstRead)
        #expect(!hydraCold.contains(false))
        #expect(baseCold.filter { $0 }.count == 3 + 5)
        #expect(baseCold.prefix(5) == [true, true, true, true, false])
        // Shared blocks are stored once: refcount = root + 5 children.
        #expect(cache.pool.refCount(cache.blocks(root)[0]) == 6)
        for k in kids { cache.free(k) }
        cache.free(root)
        #expect(cache.pool.usedCount == 0)
    }
}
