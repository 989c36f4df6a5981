import Foundation
import BanyanKernels
import BanyanKV
import BanyanModel
import BanyanTokenizer

/// One token and its log-probability (for top-k alternatives).
public struct TokenLogprob: Sendable, Equatable {
    public var token: Int
    public var logprob: Double
    public init(token: Int, logprob: Double) { self.token = token; self.logprob = logprob }
}

/// A request of a batch: `n` samples of one prompt.
public struct BatchRequest: Sendable {
    public var prompt: [Int]
    public var n = 1
    public var maxTokens = 16
    public var sampling = SamplingParameters()
    public var stopTokenIDs: Set<Int> = []
    public var stopStrings: [String] = []
    public var ignoreEOS = false
    /// Top alternatives reported per generated token (0: none).
    public var topLogprobs = 0
    /// Also report the prompt tokens' log-probabilities.
    public var echo = false
    /// Sample k draws from `SequenceRNG(seed, rngIndexOffset + k)`.
    public var rngIndexOffset = 0
    public init(prompt: [Int]) { self.prompt = prompt }
}

/// The result of one request: its samples in order, plus prompt log-probabilities when asked.
public struct BatchOutput: Sendable {
    public var completions: [Completion]
    /// `log p(prompt[i] | prompt[..<i])` for i ≥ 1 (with `echo`).
    public var promptLogprobs: [Double]?
    public var promptTokens: Int
    public var completionTokens: Int { completions.reduce(0) { $0 + $1.tokens.count } }
}

/// How a batch shares prompt KV.
public enum SchedulingPolicy: String, Sendable, CaseIterable {
    /// BatchLLM-style: all prompts in one prefix tree before anything runs; each shared node is
    /// prefilled once and pinned until every request under it has started; requests run grouped.
    case prefixTree = "prefix-tree"
    /// First come, first served with an LRU cache of full prompt blocks (vLLM/SGLang-style).
    case fcfsLRU = "fcfs-lru"
    /// Nothing shared: every sample prefills its own prompt.
    case noSharing = "none"
}

/// Counters of a batch run.
public struct BatchStats: Sendable {
    public var steps = 0
    public var decodeSteps = 0
    public var prefillRows = 0
    public var decodeRows = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    public var kvPeakBytes = 0
}

/// A run of prompt tokens to prefill into one sequence, forked from its parent unit's.
final class PrefillUnit {
    let tokens: [Int]
    let parent: PrefillUnit?
    let startPosition: Int
    var seq: SequenceID?
    var done = 0
    var ready = false
    var queued = false
    /// Samples and child units that will still fork from this unit's sequence.
    var users = 0
    /// Keep last-row logits (a request ends here, or a child wants its first token scored).
    var needsLogits = false
    var echo = false
    var lastLogits: [Float] = []
    /// echo: log p(tokens[0]) from the parent's last row, and log p(tokens[i + 1]) from row i.
    var firstLogprob = Double.nan
    var rowLogprobs: [Double] = []
    /// fcfs-lru: whole prompt, for the cache lookup at start and the insert when ready.
    var prompt: [Int] = []
    var cached = false

    init(tokens: [Int], parent: PrefillUnit?) {
        self.tokens = tokens
        self.parent = parent
        startPosition = parent.map { $0.startPosition + $0.tokens.count } ?? 0
    }
    var endPosition: Int { startPosition + tokens.count }
}

/// A sample being decoded.
private struct LiveSample {
    let request: Int
    let k: Int
    let id: SequenceID
    let promptLength: Int
    var rng: SequenceRNG
    var next: Int
    var decoder: IncrementalDecoder?
    var text = ""
}

extension Engine {
    /// Runs a batch of requests with continuous batching: finished samples free their slot for the
    /// next, prompt prefill chunks ride along with decode steps (up to `prefillChunk` rows a step),
    /// and admission keeps the KV budget (a sample is admitted only when its whole future fits).
    /// `onFinish` is called as each request completes (or fails, e.g. invalid or too large).
    /// Every sample's arithmetic depends only on its own tokens and RNG stream, so outputs equal
    /// running each request alone, whatever the policy and batch.
    @discardableResult
    public func runBatch(_ requests: [BatchRequest], policy: SchedulingPolicy = .prefixTree, prefillFirst: Bool = false,
                         onFinish: (Int, Result<BatchOutput, any Error>) -> Void) -> BatchStats {
        let vocab = config.vocabularySize, C = kv.layout.blockTokenCount
        var stats = BatchStats()
        kv.pool.resetPeak()

        // Validate; invalid requests finish at once with their error.
        var valid: [Int] = []
        for (i, r) in requests.enumerated() {
            do { try validate(r); valid.append(i) } catch { onFinish(i, .failure(error)) }
        }

        // Units per policy, and the order samples are admitted in.
        var endUnit: [Int: PrefillUnit] = [:]          // prefix-tree / fcfs-lru: request -> unit
        var sampleUnits: [Int: [PrefillUnit]] = [:]    // none: request -> one unit per sample
        var order: [Int] = valid
        switch policy {
        case .prefixTree:
            let tree = PrefixTree(valid.map { requests[$0].prompt })
            var units: [Int: PrefillUnit] = [:]
            for level in tree.levels {
                for node in level {
                    let p = tree.nodes[node].parent!
                    units[node] = PrefillUnit(tokens: tree.nodes[node].tokens, parent: p == 0 ? nil : units[p])
                }
            }
            for (i, node) in tree.endNodes { endUnit[valid[i]] = units[node]! }
            // Depth-first order keeps requests that share deeper prefixes together; bigger subtrees first.
            var dfs: [Int] = []
            var subtree: [Int: Int] = [:]
            func size(_ n: Int) -> Int {
                let s = tree.nodes[n].endingHere.reduce(0) { $0 + requests[valid[$1]].n } + tree.nodes[n].children.reduce(0) { $0 + size($1) }
                subtree[n] = s
                return s
            }
            _ = size(0)
            func visit(_ n: Int) {
                dfs += tree.nodes[n].endingHere.map { valid[$0] }
                for c in tree.nodes[n].children.sorted(by: { subtree[$0]! > subtree[$1]! }) { visit(c) }
            }
            visit(0)
            order = dfs
        case .fcfsLRU:
            for i in valid { endUnit[i] = PrefillUnit(tokens: requests[i].prompt, parent: nil); endUnit[i]!.prompt = requests[i].prompt }
        case .noSharing:
            for i in valid { sampleUnits[i] = (0..<requests[i].n).map { _ in PrefillUnit(tokens: requests[i].prompt, parent: nil) } }
        }
        // Users: each sample forks from its unit; each unit forks from its parent.
        func unitFor(_ r: Int, _ k: Int) -> PrefillUnit { policy == .noSharing ? sampleUnits[r]![k] : endUnit[r]! }
        var allUnits: [ObjectIdentifier: PrefillUnit] = [:]
        for r in valid {
            for k in 0..<requests[r].n {
                var u: PrefillUnit? = unitFor(r, k)
                u!.users += 1
                u!.needsLogits = true
                if requests[r].echo { var e = u; while let x = e { x.echo = true; x.parent?.needsLogits = true; e = x.parent } }
                while let x = u, allUnits[ObjectIdentifier(x)] == nil {
                    allUnits[ObjectIdentifier(x)] = x
                    x.parent?.users += 1
                    u = x.parent
                }
            }
        }

        let cache = policy == .fcfsLRU ? BlockCache(pool: kv.pool) : nil
        var queue: [(request: Int, k: Int)] = order.flatMap { r in (0..<requests[r].n).map { (r, $0) } }
        var head = 0
        var prefillQueue: [PrefillUnit] = []
        var live: [LiveSample] = []
        var outputs: [Int: [Completion]] = [:]
        var remaining: [Int: Int] = [:]
        var failed: Set<Int> = []
        for r in valid {
            remaining[r] = requests[r].n
            outputs[r] = (0..<requests[r].n).map {
                Completion(index: $0, suffixIndex: 0, sampleIndex: $0, tokens: [], logprobs: [], text: nil, finishReason: .length)
            }
        }

        func release(_ u: PrefillUnit) {
            u.users -= 1
            if u.users == 0, let s = u.seq { kv.free(s); u.seq = nil; u.lastLogits = [] }
        }
        func finish(_ r: Int) {
            var completions = outputs.removeValue(forKey: r)!
            if let tok = tokenizer {
                for i in completions.indices where completions[i].text == nil {
                    completions[i].text = try? tok.decode(completions[i].tokens)
                }
            }
            var promptLogprobs: [Double]? = nil
            if requests[r].echo {
                var path: [PrefillUnit] = []
                var u: PrefillUnit? = unitFor(r, 0)
                while let x = u { path.insert(x, at: 0); u = x.parent }
                var lp: [Double] = []
                for (i, x) in path.enumerated() {
                    if i > 0 { lp.append(x.firstLogprob) }
                    lp += x.rowLogprobs
                }
                promptLogprobs = lp
            }
            onFinish(r, .success(BatchOutput(completions: completions, promptLogprobs: promptLogprobs, promptTokens: requests[r].prompt.count)))
        }
        func fail(_ r: Int, _ error: any Error) {
            guard !failed.contains(r) else { return }
            failed.insert(r)
            for s in live where s.request == r { kv.free(s.id) }
            live.removeAll { $0.request == r }
            outputs.removeValue(forKey: r)
            onFinish(r, .failure(error))
        }
        /// Blocks live samples may still allocate (their whole future is reserved at admission).
        func reserved() -> Int {
            live.reduce(0) { sum, s in
                let r = requests[s.request]
                return sum + max(0, (s.promptLength + r.maxTokens + C - 1) / C - kv.blocks(s.id).count)
            } + prefillQueue.reduce(0) { $0 + ($1.tokens.count - $1.done + C - 1) / C + 1 }
        }
        func fits(_ blocks: Int) -> Bool {
            let free = kv.pool.freeCount - reserved()
            if free >= blocks { return true }
            if let cache { cache.evict(blocks - free) }
            return kv.pool.freeCount - reserved() >= blocks
        }
        func enqueue(_ u: PrefillUnit) {
            var path: [PrefillUnit] = []
            var x: PrefillUnit? = u
            while let y = x, !y.ready, !y.queued { path.insert(y, at: 0); x = y.parent }
            for y in path { y.queued = true; prefillQueue.append(y) }
        }

        let tok = tokenizer
        let clock = DispatchTime.now()
        while head < queue.count || !live.isEmpty || !prefillQueue.isEmpty {
            // 1. Admit samples in order while slots and budget allow; stop at one whose prompt is not ready.
            while head < queue.count && live.count < options.maxBatch && !(prefillFirst && !prefillQueue.isEmpty) {
                let (r, k) = queue[head]
                if failed.contains(r) { head += 1; continue }
                let u = unitFor(r, k)
                guard u.ready else { enqueue(u); if prefillFirst { for (r2, k2) in queue[head...] { enqueue(unitFor(r2, k2)) } }; break }
                let req = requests[r]
                let need = (u.endPosition + req.maxTokens + C - 1) / C - u.endPosition / C
                guard fits(need) else {
                    if live.isEmpty && prefillQueue.isEmpty {
                        fail(r, KVError.outOfMemory(neededBlocks: need, freeBlocks: kv.pool.freeCount, budgetBytes: kv.pool.budgetBytes))
                        head += 1
                        continue
                    }
                    break
                }
                let id: SequenceID
                do { id = try kv.fork(u.seq!) } catch { fail(r, error); head += 1; continue }
                var s = LiveSample(request: r, k: k, id: id, promptLength: u.endPosition,
                                   rng: SequenceRNG(seed: req.sampling.seed, index: req.rngIndexOffset + k), next: 0,
                                   decoder: tok.map { IncrementalDecoder(tokenizer: $0) })
                u.lastLogits.withUnsafeBufferPointer { l in
                    s.next = Sampler.sample(logits: l.baseAddress!, count: vocab, parameters: req.sampling, rng: &s.rng)
                    record(s.next, logits: l.baseAddress!, into: &outputs[r]![k], topK: req.topLogprobs)
                }
                release(u)
                live.append(s)
                head += 1
                // Accept the first token now: it may already end the sample.
                if acceptToken(&live[live.count - 1], into: &outputs[r]![k], request: req) {
                    let done = live.removeLast()
                    kv.free(done.id)
                    remaining[r]! -= 1
                    if remaining[r] == 0 { finish(r) }
                }
            }

            // 2. Build the step: one decode row per live sample, then prefill rows up to the token budget.
            var tokens: [Int32] = [], seqs: [SequenceID] = [], positions: [Int] = [], logitRows: [Int] = []
            var failedStep = false
            for s in live {
                do { positions.append(try kv.append(s.id, count: 1)) } catch { fail(s.request, error); failedStep = true; break }
                tokens.append(Int32(s.next)); seqs.append(s.id); logitRows.append(tokens.count - 1)
            }
            if failedStep { continue }
            let decodeCount = tokens.count
            var chunks: [(unit: PrefillUnit, from: Int, count: Int, firstRow: Int)] = []
            var budget = max(options.prefillChunk - decodeCount, min(32, options.prefillChunk))
            var qi = 0
            while budget > 0 && qi < prefillQueue.count {
                let u = prefillQueue[qi]
                if u.seq == nil {
                    // Start the unit: fork the parent (which must be ready), or reuse cached blocks.
                    guard u.parent?.ready ?? true else { break }
                    guard fits((u.tokens.count + C - 1) / C + 1) || (live.isEmpty && chunks.isEmpty) else { break }
                    do {
                        if let p = u.parent {
                            u.seq = try kv.fork(p.seq!)
                            if u.echo {
                                u.firstLogprob = p.lastLogits.withUnsafeBufferPointer {
                                    Sampler.logProbability(of: u.tokens[0], logits: $0.baseAddress!, count: vocab)
                                }
                            }
                            release(p)
                        } else if let cache, !u.echo {
                            let blocks = Array(cache.lookup(u.prompt).prefix((u.tokens.count - 1) / C))
                            u.seq = kv.createSequence(sharing: blocks)
                            u.done = blocks.count * C
                        } else {
                            u.seq = kv.createSequence()
                        }
                    } catch {
                        break
                    }
                }
                let count = min(budget, u.tokens.count - u.done)
                let start: Int
                do { start = try kv.append(u.seq!, count: count) } catch { break }
                chunks.append((u, u.done, count, tokens.count))
                for j in 0..<count {
                    tokens.append(Int32(u.tokens[u.done + j])); seqs.append(u.seq!); positions.append(start + j)
                    if u.echo || (u.done + j == u.tokens.count - 1 && u.needsLogits) { logitRows.append(tokens.count - 1) }
                }
                u.done += count
                budget -= count
                qi += 1
            }
            if tokens.isEmpty {
                // Nothing can run: the head unit does not fit even with nothing else in memory.
                guard let u = prefillQueue.first else {
                    for (r, _) in queue[head...] { fail(r, EngineError.invalidRequest("request could not be scheduled")) }
                    break
                }
                let blocked = queue[head...].filter { unitFor($0.request, $0.k) === u || isAncestor(u, of: unitFor($0.request, $0.k)) }.map(\.request)
                for r in Set(blocked).sorted() {
                    fail(r, KVError.outOfMemory(neededBlocks: (u.tokens.count + C - 1) / C, freeBlocks: kv.pool.freeCount, budgetBytes: kv.pool.budgetBytes))
                }
                prefillQueue.removeFirst()
                u.queued = false
                continue
            }

            // 3. Run it.
            let stepStart = DispatchTime.now()
            let logits = step(tokens: tokens, sequences: seqs, positions: positions, logitRows: logitRows)
            let elapsed = seconds(since: stepStart)
            if decodeCount > 0 { stats.decodeSeconds += elapsed; stats.decodeSteps += 1 } else { stats.prefillSeconds += elapsed }
            stats.steps += 1
            stats.decodeRows += decodeCount
            stats.prefillRows += tokens.count - decodeCount

            // 4. Decode rows: sample, record, accept; finished samples leave.
            var still: [LiveSample] = []
            for (i, var s) in live.enumerated() {
                let req = requests[s.request]
                let row = logits + i * vocab
                s.next = Sampler.sample(logits: row, count: vocab, parameters: req.sampling, rng: &s.rng)
                record(s.next, logits: row, into: &outputs[s.request]![s.k], topK: req.topLogprobs)
                if acceptToken(&s, into: &outputs[s.request]![s.k], request: req) {
                    kv.free(s.id)
                    remaining[s.request]! -= 1
                    if remaining[s.request] == 0 { finish(s.request) }
                } else {
                    still.append(s)
                }
            }
            live = still

            // 5. Prefill rows: echo log-probabilities, last-row logits, readiness.
            var logitIndex = decodeCount
            for (u, from, count, firstRow) in chunks {
                for j in 0..<count {
                    let row = firstRow + j
                    guard logitRows.contains(row) else { continue }
                    let l = logits + logitIndex * vocab
                    logitIndex += 1
                    let t = from + j
                    if u.echo && t + 1 < u.tokens.count {
                        u.rowLogprobs.append(Sampler.logProbability(of: u.tokens[t + 1], logits: l, count: vocab))
                    }
                    if t == u.tokens.count - 1 && u.needsLogits { u.lastLogits = Array(UnsafeBufferPointer(start: l, count: vocab)) }
                }
                if u.done == u.tokens.count {
                    u.ready = true
                    prefillQueue.removeAll { $0 === u }
                    if let cache { cache.insert(u.prompt, blocks: kv.blocks(u.seq!)) }
                }
            }
        }
        // Anything left (only after failures) is released.
        for s in live { kv.free(s.id) }
        for u in allUnits.values { if let s = u.seq { kv.free(s); u.seq = nil } }
        cache?.clear()
        stats.kvPeakBytes = kv.pool.peakBytes
        _ = clock
        return stats
    }

    func isAncestor(_ a: PrefillUnit, of b: PrefillUnit) -> Bool {
        var x = b.parent
        while let y = x { if y === a { return true }; x = y.parent }
        return false
    }

    /// Appends the chosen token's log-probability (and top alternatives) to the completion.
    private func record(_ token: Int, logits: UnsafePointer<Float>, into c: inout Completion, topK: Int) {
        c.logprobs.append(Sampler.logProbability(of: token, logits: logits, count: config.vocabularySize))
        if topK > 0 { c.topLogprobs.append(Sampler.topLogprobs(logits: logits, count: config.vocabularySize, k: topK)) }
    }

    /// Takes the sample's newest token into its completion unless it ends it; true when finished.
    private func acceptToken(_ s: inout LiveSample, into c: inout Completion, request r: BatchRequest) -> Bool {
        let t = s.next
        let eos = !r.ignoreEOS && config.eosTokenIDs.contains(t)
        if eos || r.stopTokenIDs.contains(t) {
            c.logprobs.removeLast()
            if !c.topLogprobs.isEmpty { c.topLogprobs.removeLast() }
            c.finishReason = eos ? .eos : .stop
            return true
        }
        c.tokens.append(t)
        if var decoder = s.decoder, !r.stopStrings.isEmpty {
            s.text += (try? decoder.append(t)) ?? ""
            s.decoder = decoder
            // Stop strings are matched on decoded text, also across token boundaries; the match and
            // anything after it are cut from the text.
            if let cut = r.stopStrings.compactMap({ s.text.range(of: $0)?.lowerBound }).min() {
                c.text = String(s.text[..<cut])
                c.finishReason = .stop
                return true
            }
        }
        if c.tokens.count >= r.maxTokens {
            c.finishReason = .length
            return true
        }
        return false
    }

    /// Checks one request against the model: token ids, context, sampling values.
    func validate(_ r: BatchRequest) throws {
        guard !r.prompt.isEmpty else { throw EngineError.invalidRequest("the prompt is empty") }
        guard r.n >= 1 else { throw EngineError.invalidRequest("n must be at least 1, got \(r.n)") }
        guard r.maxTokens >= 1 else { throw EngineError.invalidRequest("max_tokens must be at least 1, got \(r.maxTokens)") }
        guard r.topLogprobs >= 0 && r.topLogprobs <= 20 else { throw EngineError.invalidRequest("logprobs must be in 0...20, got \(r.topLogprobs)") }
        try validate(tokens: r.prompt, what: "prompt")
        for t in r.stopTokenIDs { try validate(tokens: [t], what: "stop token") }
        try validateContext(r.prompt.count, what: "prompt")
        try validateContext(r.prompt.count + r.maxTokens, what: "prompt (\(r.prompt.count)) + max tokens (\(r.maxTokens))")
        if !r.stopStrings.isEmpty && tokenizer == nil {
            throw EngineError.invalidRequest("stop strings need a tokenizer, and this model has none (use stop token ids)")
        }
    }
}

