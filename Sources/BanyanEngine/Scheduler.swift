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
struct LiveSample {
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
    public func runBatch(_ requests: [Request], policy: SchedulingPolicy = .prefixTree, prefillFirst: Bool = false,
                         onFinish: (Int, Result<BatchOutput, any Error>) -> Void) -> BatchStats {
        withoutActuallyEscaping(onFinish) { onFinish in
            BatchRun(engine: self, requests: requests, policy: policy, prefillFirst: prefillFirst, onFinish: onFinish).run()
        }
    }
}

/// The state of one `runBatch`: prefill units, the admission queue, live samples, outputs.
/// Each step: admit samples, build rows (decode first, then prefill chunks), run the model,
/// consume decode logits, then prefill logits.
final class BatchRun {
    let engine: Engine
    let kv: KVCache
    let requests: [Request]
    let policy: SchedulingPolicy
    let prefillFirst: Bool
    let onFinish: (Int, Result<BatchOutput, any Error>) -> Void
    let vocab: Int
    let C: Int
    let cache: BlockCache?

    var endUnit: [Int: PrefillUnit] = [:]          // prefix-tree / fcfs-lru: request -> unit
    var sampleUnits: [Int: [PrefillUnit]] = [:]    // none: request -> one unit per sample
    var allUnits: [PrefillUnit] = []
    var queue: [(request: Int, k: Int)] = []
    var head = 0
    var prefillQueue: [PrefillUnit] = []
    var live: [LiveSample] = []
    var outputs: [Int: [Completion]] = [:]
    var remaining: [Int: Int] = [:]
    var failed: Set<Int> = []
    var stats = BatchStats()

    init(engine: Engine, requests: [Request], policy: SchedulingPolicy, prefillFirst: Bool,
         onFinish: @escaping (Int, Result<BatchOutput, any Error>) -> Void) {
        self.engine = engine
        kv = engine.kv
        self.requests = requests
        self.policy = policy
        self.prefillFirst = prefillFirst
        self.onFinish = onFinish
        vocab = engine.config.vocabularySize
        C = engine.kv.layout.blockTokenCount
        cache = policy == .fcfsLRU ? BlockCache(pool: engine.kv.pool) : nil
    }

    func run() -> BatchStats {
        kv.pool.resetPeak()
        var valid: [Int] = []
        for (i, r) in requests.enumerated() {
            do { try engine.validate(r); valid.append(i) } catch { onFinish(i, .failure(error)) }
        }
        let order = planUnits(valid)
        queue = order.flatMap { r in (0..<requests[r].n).map { (r, $0) } }
        for r in valid {
            remaining[r] = requests[r].n
            outputs[r] = (0..<requests[r].n).map {
                Completion(index: $0, suffixIndex: 0, sampleIndex: $0, tokens: [], logprobs: [], text: nil, finishReason: .length)
            }
        }
        while head < queue.count || !live.isEmpty || !prefillQueue.isEmpty {
            admit()
            guard let step = buildStep() else { continue }
            if step.tokens.isEmpty {
                if !unblock() { break }
                continue
            }
            let start = DispatchTime.now()
            let logits = engine.step(tokens: step.tokens, sequences: step.sequences, positions: step.positions,
                                     logitRows: step.logitRows)
            let elapsed = seconds(since: start)
            if step.decodeCount > 0 { stats.decodeSeconds += elapsed; stats.decodeSteps += 1 } else { stats.prefillSeconds += elapsed }
            stats.steps += 1
            stats.decodeRows += step.decodeCount
            stats.prefillRows += step.tokens.count - step.decodeCount
            consumeDecode(logits)
            consumePrefill(logits + step.decodeCount * vocab, step)
        }
        // Anything left (only after failures) is released.
        for s in live { kv.free(s.id) }
        for u in allUnits { if let s = u.seq { kv.free(s); u.seq = nil } }
        cache?.clear()
        stats.kvPeakBytes = kv.pool.peakBytes
        return stats
    }

    // MARK: - Planning

    /// Builds the prefill units of `policy` and returns the order requests are admitted in.
    func planUnits(_ valid: [Int]) -> [Int] {
        var order = valid
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
            // Depth-first keeps requests that share deeper prefixes together; larger subtrees (more
            // samples reusing the pinned prefix) first.
            var samples: [Int: Int] = [:]
            func count(_ n: Int) -> Int {
                let c = tree.nodes[n].endingHere.reduce(0) { $0 + requests[valid[$1]].n } + tree.nodes[n].children.reduce(0) { $0 + count($1) }
                samples[n] = c
                return c
            }
            _ = count(0)
            order = []
            func visit(_ n: Int) {
                order += tree.nodes[n].endingHere.map { valid[$0] }
                for c in tree.nodes[n].children.sorted(by: { samples[$0]! > samples[$1]! }) { visit(c) }
            }
            visit(0)
        case .fcfsLRU:
            for i in valid {
                let u = PrefillUnit(tokens: requests[i].prompt, parent: nil)
                u.prompt = requests[i].prompt
                endUnit[i] = u
            }
        case .noSharing:
            for i in valid { sampleUnits[i] = (0..<requests[i].n).map { _ in PrefillUnit(tokens: requests[i].prompt, parent: nil) } }
        }
        // Users: each sample forks from its unit; each unit from its parent.
        var seen = Set<ObjectIdentifier>()
        for r in valid {
            for k in 0..<requests[r].n {
                var u: PrefillUnit? = unitFor(r, k)
                u!.users += 1
                u!.needsLogits = true
                if (requests[r].promptLogprobsFrom != nil) {
                    var e = u
                    while let x = e { x.echo = true; x.parent?.needsLogits = true; e = x.parent }
                }
                while let x = u, !seen.contains(ObjectIdentifier(x)) {
                    seen.insert(ObjectIdentifier(x))
                    allUnits.append(x)
                    x.parent?.users += 1
                    u = x.parent
                }
            }
        }
        return order
    }

    func unitFor(_ r: Int, _ k: Int) -> PrefillUnit { policy == .noSharing ? sampleUnits[r]![k] : endUnit[r]! }

    // MARK: - Memory

    /// Blocks already promised: each live sample's whole future, each started unit's remaining prompt.
    func reserved() -> Int {
        live.reduce(0) { sum, s in
            sum + max(0, (s.promptLength + requests[s.request].maxTokens + C - 1) / C - kv.blocks(s.id).count)
        } + prefillQueue.reduce(0) { $0 + ($1.seq == nil ? 0 : ($1.tokens.count - $1.done + C - 1) / C + 1) }
    }

    /// Whether `blocks` more fit beside what is reserved (evicting unused cached prefixes if needed).
    func fits(_ blocks: Int) -> Bool {
        let free = kv.pool.freeCount - reserved()
        if free >= blocks { return true }
        cache?.evict(blocks - free)
        return kv.pool.freeCount - reserved() >= blocks
    }

    func release(_ u: PrefillUnit) {
        u.users -= 1
        if u.users == 0, let s = u.seq { kv.free(s); u.seq = nil; u.lastLogits = [] }
    }

    /// `u` and its ancestors that are neither prefilled nor queued, ancestors first.
    func unqueuedPath(to u: PrefillUnit) -> [PrefillUnit] {
        var path: [PrefillUnit] = []
        var x: PrefillUnit? = u
        while let y = x, !y.ready, !y.queued { path.append(y); x = y.parent }
        return path.reversed()
    }

    /// Queues `u` and its unprefilled ancestors (ancestors first).
    func enqueue(_ u: PrefillUnit) {
        for y in unqueuedPath(to: u) { y.queued = true; prefillQueue.append(y) }
    }

    // MARK: - Admission

    /// Admits samples in order while slots and budget allow; stops at one whose prompt is not ready
    /// (queueing its prefill) or that must wait for memory.
    func admit() {
        while head < queue.count && live.count < engine.options.maxBatch && !(prefillFirst && !prefillQueue.isEmpty) {
            let (r, k) = queue[head]
            if failed.contains(r) { head += 1; continue }
            let u = unitFor(r, k)
            guard u.ready else {
                enqueue(u)
                if prefillFirst { for (r2, k2) in queue[head...] { enqueue(unitFor(r2, k2)) } } else { lookAhead() }
                return
            }
            let req = requests[r]
            let need = (u.endPosition + req.maxTokens + C - 1) / C - u.endPosition / C
            guard fits(need) else {
                guard live.isEmpty && prefillQueue.isEmpty else { return }  // wait for memory
                fail(r, KVError.outOfMemory(neededBlocks: need, freeBlocks: kv.pool.freeCount, budgetBytes: kv.pool.budgetBytes))
                head += 1
                continue
            }
            let id: SequenceID
            do { id = try kv.fork(u.seq!) } catch { fail(r, error); head += 1; continue }
            var s = LiveSample(request: r, k: k, id: id, promptLength: u.endPosition,
                               rng: SequenceRNG(seed: req.sampling.seed, index: req.rngIndexOffset + k), next: 0,
                               decoder: engine.tokenizer.map { IncrementalDecoder(tokenizer: $0) })
            u.lastLogits.withUnsafeBufferPointer { l in
                s.next = Sampler.sample(logits: l.baseAddress!, count: vocab, parameters: req.sampling, rng: &s.rng)
                engine.record(s.next, logits: l.baseAddress!, into: &outputs[r]![k], topK: req.topLogprobs)
            }
            release(u)
            head += 1
            // The first token may already end the sample.
            if engine.acceptToken(&s, into: &outputs[r]![k], request: req) {
                kv.free(s.id)
                sampleDone(r)
            } else {
                live.append(s)
            }
        }
    }

    /// Queues the prefill of the requests after the head too, so one step's token budget holds
    /// several prompts (BatchLLM's token batching) rather than one prompt per step. Bounded by the
    /// step budget, the batch slots and memory: a unit is queued only if its prompt and the whole
    /// future of every sample up to it fit beside what is already reserved, so prefilling ahead
    /// never takes memory the head of the queue will need.
    func lookAhead() {
        let budget = engine.options.prefillChunk
        var pending = prefillQueue.reduce(0) { $0 + tokensToCompute($1) }
        var need = 0, slots = live.count
        var i = head
        while i < queue.count, pending < budget, slots < engine.options.maxBatch {
            let (r, k) = queue[i]
            i += 1
            if failed.contains(r) { continue }
            let v = unitFor(r, k), req = requests[r]
            slots += 1
            need += (v.endPosition + req.maxTokens + C - 1) / C - v.endPosition / C
            if v.ready || v.queued { continue }
            if let parent = v.parent, !parent.ready {
                // The next group's shared prefix is not prefilled yet: queue it (ancestors first) so
                // it rides along with this group's steps; v itself waits for it.
                let path = unqueuedPath(to: parent)
                need += path.reduce(0) { $0 + (tokensToCompute($1) + C - 1) / C + 1 }
                if !path.isEmpty && fits(need) { enqueue(parent) }
                break
            }
            let work = tokensToCompute(v)
            need += (work + C - 1) / C + 1
            guard fits(need) else { break }
            enqueue(v)
            pending += work
        }
    }

    /// Prompt rows `u` still has to run. Under fcfs-lru a unit not yet started will reuse the cached
    /// full blocks of its prompt, so only the rest counts against the step budget (as vLLM counts a
    /// request's computed tokens before scheduling it); an estimate, since the cache may change
    /// before `start` looks again.
    func tokensToCompute(_ u: PrefillUnit) -> Int {
        guard u.seq == nil, let blocks = reusableCachedBlocks(u) else { return u.tokens.count - u.done }
        return u.tokens.count - blocks.count * C
    }

    /// fcfs-lru: the cached full blocks a not-yet-started `u` reuses; nil without a cache or with
    /// echo (which needs every prompt row's logits). At least one token is left to compute: its
    /// logits are needed.
    func reusableCachedBlocks(_ u: PrefillUnit) -> [BlockID]? {
        guard let cache, !u.echo else { return nil }
        return Array(cache.lookup(u.prompt).prefix((u.tokens.count - 1) / C))
    }

    // MARK: - Steps

    struct Step {
        var tokens: [Int32] = [], sequences: [SequenceID] = [], positions: [Int] = [], logitRows: [Int] = []
        var decodeCount = 0
        /// Prefill chunks: unit, first token index, token count, whether each row has logits.
        var chunks: [(unit: PrefillUnit, from: Int, count: Int, logits: [Bool])] = []
    }

    /// One decode row per live sample, then prefill rows up to the step's token budget.
    /// nil when a live sample could not grow (it failed; try again).
    func buildStep() -> Step? {
        var step = Step()
        for s in live {
            do { step.positions.append(try kv.append(s.id, count: 1)) } catch { fail(s.request, error); return nil }
            step.tokens.append(Int32(s.next)); step.sequences.append(s.id); step.logitRows.append(step.tokens.count - 1)
        }
        step.decodeCount = step.tokens.count
        var budget = max(engine.options.prefillChunk - step.decodeCount, min(32, engine.options.prefillChunk))
        for u in prefillQueue where budget > 0 {
            if u.seq == nil {
                // A unit waits for its parent's prefill; units queued after it (another group's) may run.
                if !(u.parent?.ready ?? true) { continue }
                guard start(u, alone: live.isEmpty && step.chunks.isEmpty) else { break }
            }
            let count = min(budget, u.tokens.count - u.done)
            guard let first = try? kv.append(u.seq!, count: count) else { break }
            var wantsLogits: [Bool] = []
            for j in 0..<count {
                step.tokens.append(Int32(u.tokens[u.done + j])); step.sequences.append(u.seq!); step.positions.append(first + j)
                let want = u.echo || (u.done + j == u.tokens.count - 1 && u.needsLogits)
                if want { step.logitRows.append(step.tokens.count - 1) }
                wantsLogits.append(want)
            }
            step.chunks.append((u, u.done, count, wantsLogits))
            u.done += count
            budget -= count
        }
        return step
    }

    /// Starts prefilling `u`: fork its parent (the caller checks it is ready), or reuse cached blocks,
    /// or start empty.
    func start(_ u: PrefillUnit, alone: Bool) -> Bool {
        precondition(u.parent?.ready ?? true, "a unit starts only after its parent is prefilled")
        guard fits((u.tokens.count + C - 1) / C + 1) || alone else { return false }
        if let p = u.parent {
            guard let seq = try? kv.fork(p.seq!) else { return false }
            u.seq = seq
            if u.echo {
                u.firstLogprob = p.lastLogits.withUnsafeBufferPointer {
                    Sampler.logProbability(of: u.tokens[0], logits: $0.baseAddress!, count: vocab)
                }
            }
            release(p)
        } else if let blocks = reusableCachedBlocks(u) {
            u.seq = kv.createSequence(sharing: blocks)
            u.done = blocks.count * C
        } else {
            u.seq = kv.createSequence()
        }
        return true
    }

    /// Nothing could run: the head unit does not fit even with nothing else in memory, so the
    /// requests waiting on it fail. Returns false when there is nothing left to unblock.
    func unblock() -> Bool {
        guard let u = prefillQueue.first else {
            for (r, _) in queue[head...] { fail(r, EngineError.invalidRequest("request could not be scheduled")) }
            return false
        }
        let blocked = queue[head...].filter { unitFor($0.request, $0.k) === u || u.isAncestor(of: unitFor($0.request, $0.k)) }
        for r in Set(blocked.map(\.request)).sorted() {
            fail(r, KVError.outOfMemory(neededBlocks: (u.tokens.count + C - 1) / C, freeBlocks: kv.pool.freeCount,
                                        budgetBytes: kv.pool.budgetBytes))
        }
        prefillQueue.removeFirst()
        u.queued = false
        return true
    }

    /// Decode rows: sample the next token, record it, and retire finished samples.
    func consumeDecode(_ logits: UnsafeMutablePointer<Float>) {
        var still: [LiveSample] = []
        for (i, var s) in live.enumerated() {
            let req = requests[s.request]
            let row = logits + i * vocab
            s.next = Sampler.sample(logits: row, count: vocab, parameters: req.sampling, rng: &s.rng)
            engine.record(s.next, logits: row, into: &outputs[s.request]![s.k], topK: req.topLogprobs)
            if engine.acceptToken(&s, into: &outputs[s.request]![s.k], request: req) {
                kv.free(s.id)
                sampleDone(s.request)
            } else {
                still.append(s)
            }
        }
        live = still
    }

    /// Prefill rows: echo log-probabilities, last-row logits, and readiness of finished units.
    func consumePrefill(_ logits: UnsafeMutablePointer<Float>, _ step: Step) {
        var row = 0
        for (u, from, count, wantsLogits) in step.chunks {
            for j in 0..<count where wantsLogits[j] {
                let l = logits + row * vocab
                row += 1
                let t = from + j
                if u.echo && t + 1 < u.tokens.count {
                    u.rowLogprobs.append(Sampler.logProbability(of: u.tokens[t + 1], logits: l, count: vocab))
                }
                if t == u.tokens.count - 1 && u.needsLogits { u.lastLogits = Array(UnsafeBufferPointer(start: l, count: vocab)) }
            }
            if u.done == u.tokens.count {
                u.ready = true
                prefillQueue.removeAll { $0 === u }
                cache?.insert(u.prompt, blocks: kv.blocks(u.seq!))
            }
        }
    }

    // MARK: - Results

    func sampleDone(_ r: Int) {
        remaining[r]! -= 1
        if remaining[r] == 0 { finish(r) }
    }

    func finish(_ r: Int) {
        var completions = outputs.removeValue(forKey: r)!
        if let tok = engine.tokenizer {
            for i in completions.indices where completions[i].text == nil {
                completions[i].text = try? tok.decode(completions[i].tokens)
            }
        }
        var promptLogprobs: [Double]? = nil
        if (requests[r].promptLogprobsFrom != nil) {
            var path: [PrefillUnit] = []
            var u: PrefillUnit? = unitFor(r, 0)
            while let x = u { path.insert(x, at: 0); u = x.parent }
            promptLogprobs = path.enumerated().flatMap { i, x in (i > 0 ? [x.firstLogprob] : []) + x.rowLogprobs }
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
}

extension PrefillUnit {
    func isAncestor(of b: PrefillUnit) -> Bool {
        var x = b.parent
        while let y = x { if y === self { return true }; x = y.parent }
        return false
    }
}

extension Engine {
    /// Appends the chosen token's log-probability (and top alternatives) to the completion.
    func record(_ token: Int, logits: UnsafePointer<Float>, into c: inout Completion, topK: Int) {
        c.logprobs.append(Sampler.logProbability(of: token, logits: logits, count: config.vocabularySize))
        if topK > 0 { c.topLogprobs.append(Sampler.topLogprobs(logits: logits, count: config.vocabularySize, k: topK)) }
    }

    /// Takes the sample's newest token into its completion unless it ends it; true when finished.
    func acceptToken(_ s: inout LiveSample, into c: inout Completion, request r: Request) -> Bool {
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
    public func validate(_ r: Request) throws {
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

