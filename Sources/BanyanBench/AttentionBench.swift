import Foundation
import BanyanKernels
import BanyanKV
import BanyanAttention

/// Attention-only microbenchmark: `batch` sequences fork from one `prefix`-token root, then hold
/// `suffix` private tokens each; one decode query per sequence attends over all `prefix + suffix`
/// positions. Times `Attention.run` (one layer) per mode; the plan is built outside the timing
/// (the engine builds it once per step for all layers).
public struct AttentionCase: Sendable, Codable {
    public var batch: Int
    public var prefix: Int
    public var suffix: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// Element type of the KV blocks (the engine's default is bf16 under fast precision).
    public var kvDType: DType

    public init(batch: Int, prefix: Int, suffix: Int, heads: Int, kvHeads: Int, headDim: Int, kvDType: DType = .f32) {
        self.batch = batch; self.prefix = prefix; self.suffix = suffix
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim; self.kvDType = kvDType
    }

    public func validate() throws {
        guard batch >= 1, prefix >= 1, suffix >= 0, heads >= 1, kvHeads >= 1, headDim >= 1 else {
            throw BenchError.invalidArgument("attention: --batch, --prefix, --heads, --kv-heads, --head-dim must be ≥ 1 and --suffix ≥ 0 (got batch \(batch), prefix \(prefix), suffix \(suffix), heads \(heads), kv-heads \(kvHeads), head-dim \(headDim))")
        }
        guard heads % kvHeads == 0 else {
            throw BenchError.invalidArgument("attention: --heads \(heads) must be a multiple of --kv-heads \(kvHeads)")
        }
    }

    /// 4·B·H·(P+S)·D: QKᵀ and PV, 2 flops per multiply-add each.
    public var flops: Double { 4 * Double(batch * heads * (prefix + suffix) * headDim) }
    /// KV bytes (K and V) one call must read: hydragen reads the prefix once, baseline once per sequence.
    public func bytesRead(_ mode: AttentionMode) -> Double {
        let perToken = Double(2 * kvHeads * headDim * kvDType.byteCount)
        switch mode {
        case .hydragen: return Double(prefix + batch * suffix) * perToken
        case .baseline: return Double(batch * (prefix + suffix)) * perToken
        case .none: return 0
        }
    }
}

/// Seconds per `Attention.run` call for each mode, repeated `repeats` times (each sample the mean of
/// calls over at least `minSeconds`).
public struct AttentionMeasurement: Sendable, Codable {
    public var mode: String
    public var seconds: Statistic
    public var gflops: Statistic
    public var gbps: Statistic
}

public enum AttentionBench {
    public static func run(_ c: AttentionCase, modes: [AttentionMode], repeats: Int, minSeconds: Double,
                           threads: ThreadPool) throws -> [AttentionMeasurement] {
        try c.validate()
        let layout = KVLayout(layerCount: 1, kvHeadCount: c.kvHeads, headDim: c.headDim, dtype: c.kvDType)
        let T = layout.blockTokenCount
        let rootBlocks = (c.prefix + T - 1) / T
        let ownBlocks = (c.prefix + c.suffix + T - 1) / T - c.prefix / T
        let blocks = rootBlocks + c.batch * ownBlocks + 1
        let kv = KVCache(pool: try KVBlockPool(layout: layout, budgetBytes: blocks * layout.blockByteCount))
        var rng = UInt64(0x5EED)
        func fill(_ s: SequenceID, fromBlock: Int) {
            for b in kv.blocks(s).dropFirst(fromBlock) {
                for h in 0..<c.kvHeads {
                    for tile in [kv.pool.keys(b, layer: 0, kvHead: h), kv.pool.values(b, layer: 0, kvHead: h)] {
                        for i in 0..<layout.tileElementCount {
                            rng = rng &* 6364136223846793005 &+ 1442695040888963407
                            let x = Float(Int64(bitPattern: rng) >> 40) / Float(1 << 23)  // uniform in [-1, 1)
                            switch c.kvDType {
                            case .f32: tile.assumingMemoryBound(to: Float.self)[i] = x
                            case .f16: tile.assumingMemoryBound(to: Float16.self)[i] = Float16(x)
                            case .bf16: tile.assumingMemoryBound(to: UInt16.self)[i] = UInt16(x.bitPattern >> 16)
                            }
                        }
                    }
                }
            }
        }
        let root = kv.createSequence()
        _ = try kv.append(root, count: c.prefix)
        fill(root, fromBlock: 0)
        var rows: [AttentionRow] = []
        for _ in 0..<c.batch {
            let s = try kv.fork(root)
            if c.suffix > 0 {
                _ = try kv.append(s, count: c.suffix)
                fill(s, fromBlock: c.prefix / T)  // the copied partial block too: random either way
            }
            rows.append(AttentionRow(sequence: s, blocks: kv.blocks(s), position: c.prefix + c.suffix - 1))
        }
        let qCount = c.batch * c.heads * c.headDim
        let q = UnsafeMutablePointer<Float>.allocate(capacity: qCount)
        let out = UnsafeMutablePointer<Float>.allocate(capacity: qCount)
        defer { q.deallocate(); out.deallocate() }
        let scale = 1 / Float(c.headDim).squareRoot()
        for i in 0..<qCount {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            q[i] = Float(Int64(bitPattern: rng) >> 40) / Float(1 << 23) * scale
        }
        let shape = AttentionShape(headCount: c.heads, kvHeadCount: c.kvHeads, headDim: c.headDim)
        let scratch = AttentionScratch()
        let plans = modes.map { AttentionPlan(rows: rows, blockTokenCount: T, mode: $0) }
        var samples = [[Double]](repeating: [], count: modes.count)
        for plan in plans {  // warm-up
            Attention.run(plan: plan, q: q, out: out, kv: kv.pool, layer: 0, shape: shape, scratch: scratch, threads: threads)
        }
        // Modes interleaved per repeat, so drift (thermal, neighbours) hits them alike.
        for _ in 0..<max(1, repeats) {
            for (i, plan) in plans.enumerated() {
                samples[i].append(Timing.mean(minSeconds: minSeconds) {
                    Attention.run(plan: plan, q: q, out: out, kv: kv.pool, layer: 0, shape: shape, scratch: scratch, threads: threads)
                })
            }
        }
        return modes.enumerated().map { i, mode in
            let s = Statistic(samples[i])
            return AttentionMeasurement(mode: mode.rawValue, seconds: s, gflops: s.map { c.flops / $0 / 1e9 },
                                        gbps: s.map { c.bytesRead(mode) / $0 / 1e9 })
        }
    }
}
