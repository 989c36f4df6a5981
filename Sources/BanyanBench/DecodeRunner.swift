import Foundation
import BanyanKernels
import BanyanKV
import BanyanAttention
import BanyanModel
import BanyanEngine

/// Errors of the benchmark harness.
public enum BenchError: BanyanError {
    case invalidArgument(String)
    case io(path: String, message: String)
    /// `bench serve`: the server under test answered wrongly or not at all.
    case server(url: String, message: String)

    public var description: String {
        switch self {
        case .invalidArgument(let m): return m
        case let .io(path, message): return "\(path): \(message)"
        case let .server(url, message): return "\(url): \(message)"
        }
    }
}

/// Times decode for the suites through the engine's step driver: a prefix tree is prefilled once,
/// then decode is timed over forks of it in each attention mode, so one prefill serves every mode,
/// batch and repeat. A step is the scheduler's step (append KV, plan from the block tables,
/// forward) minus sampling filters: the next token is the argmax.
final class DecodeRunner {
    let engine: Engine
    let prefillChunk = 256

    init(model: Model, threads: ThreadPool, maxKVBytes: Int) throws {
        var options = EngineOptions()
        options.threadCount = threads.threadCount
        options.maxKVBytes = maxKVBytes
        engine = try Engine(model: model, threads: threads, options: options)
    }

    var model: Model { engine.model }
    var kv: KVCache { engine.kv }
    var config: ModelConfig { engine.config }
    var blockTokens: Int { kv.layout.blockTokenCount }

    /// One forward step; returns each row's argmax next token for `logitRows`.
    @discardableResult
    func step(tokens: [Int32], sequences: [SequenceID], positions: [Int], logitRows: [Int], mode: AttentionMode) -> [Int32] {
        let logits = engine.step(tokens: tokens, sequences: sequences, positions: positions, logitRows: logitRows, attention: mode)
        let vocab = config.vocabularySize
        return logitRows.indices.map { i in Int32(Sampler.argmax(logits + i * vocab, count: vocab)) }
    }

    /// Appends `tokens` to each sequence and runs them in steps of at most `prefillChunk` rows (rows of
    /// several sequences share a step). Returns each sequence's next token.
    @discardableResult
    func prefill(_ work: [(SequenceID, [Int])], mode: AttentionMode) throws -> [Int32] {
        var rows: [(w: Int, position: Int, token: Int32)] = []
        for (i, (s, toks)) in work.enumerated() {
            let start = try kv.append(s, count: toks.count)
            for (j, t) in toks.enumerated() { rows.append((i, start + j, Int32(t))) }
        }
        var next = [Int32](repeating: 0, count: work.count)
        var start = 0
        while start < rows.count {
            let chunk = rows[start..<min(rows.count, start + prefillChunk)]
            var logitRows: [Int] = [], owners: [Int] = []
            for (r, row) in chunk.enumerated() where row.position == kv.length(work[row.w].0) - 1 {
                logitRows.append(r); owners.append(row.w)
            }
            let out = step(tokens: chunk.map(\.token), sequences: chunk.map { work[$0.w].0 }, positions: chunk.map(\.position),
                           logitRows: logitRows, mode: mode)
            for (i, w) in owners.enumerated() { next[w] = out[i] }
            start += chunk.count
        }
        return next
    }

    /// Decodes `steps` tokens for every sequence (first input `first[i]`), greedy; returns seconds.
    func decode(_ sequences: [SequenceID], first: [Int32], steps: Int, mode: AttentionMode) throws -> Double {
        var tokens = first
        let t0 = Timing.now()
        for _ in 0..<steps {
            var positions: [Int] = []
            positions.reserveCapacity(sequences.count)
            for s in sequences { positions.append(try kv.append(s, count: 1)) }
            tokens = step(tokens: tokens, sequences: sequences, positions: positions,
                          logitRows: Array(0..<sequences.count), mode: mode)
        }
        return Timing.seconds(since: t0)
    }

    /// A sequence holding the first `length` tokens of `root` (a multiple of the block size, or all of
    /// it): shares root's blocks, so a shorter prefix costs no prefill.
    func prefixOf(_ root: SequenceID, length: Int) throws -> SequenceID {
        precondition(length == kv.length(root) || length % blockTokens == 0, "prefix cut must be block-aligned")
        let s = try kv.fork(root)
        kv.truncate(s, to: length)
        return s
    }

    /// Blocks `count` forks of a `length`-token sequence need to grow by `extra` tokens each.
    func blocksNeeded(forks count: Int, length: Int, extra: Int) -> Int {
        let own = (length + extra + blockTokens - 1) / blockTokens - length / blockTokens
        return count * own
    }

    /// Nil when `blocks` more fit in the pool, else the reason, in MiB.
    func fitProblem(blocks: Int) -> String? {
        guard blocks > kv.pool.freeCount else { return nil }
        let b = Double(kv.layout.blockByteCount)
        return "does not fit the KV budget: needs \(Format.mib(Double(blocks) * b)) MiB more, "
            + "\(Format.mib(Double(kv.pool.freeCount) * b)) MiB free of \(Format.mib(Double(kv.pool.budgetBytes))) MiB (--max-kv-bytes)"
    }

    /// Bytes of KV blocks in use now.
    var usedBytes: Int { kv.pool.usedCount * kv.layout.blockByteCount }

    /// Deterministic pseudo-random token ids (avoiding id 0..2, usually special).
    static func tokens(_ count: Int, vocab: Int, seed: UInt64) -> [Int] {
        var state = seed &+ 0x9E37_79B9_7F4A_7C15
        let span = max(1, vocab - 3)
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return 3 + Int((state >> 33) % UInt64(span)) % vocab
        }
    }
}

/// Loads `spec` for a benchmark. A synthetic model's context is widened to `context` when shorter
/// (its weights are random, so positions past the original context are as meaningful as any); the
/// returned note says so. A real checkpoint is never widened: points past its context are skipped.
func loadBenchModel(_ spec: String, context: Int, threads: ThreadPool) throws -> (Model, note: String?) {
    let model = try Model.load(spec, threads: threads)
    guard spec.hasPrefix("synthetic:"), model.config.maxPositionCount < context else { return (model, nil) }
    var c = model.config
    let original = c.maxPositionCount
    c.maxPositionCount = context
    return (Model(name: model.name, config: c, weights: model.weights),
            "context widened from \(original) to \(context) tokens (synthetic weights; shapes unchanged)")
}
