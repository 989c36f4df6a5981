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

/// How the scheduler shares prompt KV and orders waiting requests.
public enum SchedulingPolicy: String, Sendable, CaseIterable {
    /// BatchLLM-style for batch jobs: waiting requests are kept in prefix-tree order (lexicographic
    /// by prompt, so every shared prefix's requests are adjacent and run together), over the
    /// prefix cache.
    case prefixTree = "prefix-tree"
    /// First come, first served over the persistent prefix cache (vLLM/SGLang-style; the server's default).
    case fcfsLRU = "fcfs-lru"
    /// Nothing shared: no prefix cache, every sample prefills its own prompt.
    case noSharing = "none"
}

/// Counters of a scheduler's steps.
public struct BatchStats: Sendable {
    public var steps = 0
    public var decodeSteps = 0
    public var prefillRows = 0
    public var decodeRows = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    public var kvPeakBytes = 0
}

/// The one scheduler every client drives (generate, score, batch through `runBatch`; serve through
/// `EngineLoop`). It lives as long as its clients want: `add` requests at any time, `abort` them,
/// and `step` — each step decodes one token for every live sample first, then prefills prompt
/// chunks of waiting requests within `EngineOptions.maxBatchedTokens` rows.
///
/// KV memory: prompts are matched against a persistent `PrefixCache` (not under `none`), so a
/// request reuses the KV of any earlier request's prompt, finished or running; a request whose
/// prompt shares more with a prefill still running waits for it instead of computing the shared
/// part again. Admission takes what a prompt needs now, not its samples' whole future; when decode
/// cannot grow, cached leaves are evicted, then the newest running work is preempted and later
/// recomputed. Every row's arithmetic depends only on its own tokens (batch-invariant kernels,
/// position-aligned KV blocks), so recomputation, cache hits, preemption and whatever else runs
/// never change a request's output bits.
public final class Scheduler {
    public typealias Sink = (Result<RequestEvent, any Error>) -> Void

    final class Sample {
        let index: Int
        var rng: SequenceRNG
        /// Tokens fed to the model: KV holds `prompt + fed`.
        var fed: [Int] = []
        /// Sampled and accepted, to be fed next step.
        var next: Int?
        var seq: SequenceID?
        var decoder: IncrementalDecoder?
        /// Decoded text (UTF-8) and how much of it was sent.
        var text: [UInt8] = []
        var sent = 0
        var completionTokens = 0
        var finished = false
        /// Admission order (preemption takes the newest first).
        var order = 0
        init(index: Int, rng: SequenceRNG, decoder: IncrementalDecoder?) {
            self.index = index; self.rng = rng; self.decoder = decoder
        }
    }

    final class Job {
        let request: Entry
        let samples: [Sample]
        /// What the sequence holds when the job is done.
        let tokens: [Int]
        let seq: SequenceID
        var done: Int
        /// Rows whose logits give prompt log-probabilities: positions `from - 1 ..< tokens.count - 1`.
        let promptLogprobsFrom: Int?
        var promptLogprobs: [Double] = []
        /// The last row's logits draw the samples' first tokens.
        let wantsLast: Bool
        var lastLogits: [Float] = []
        let order: Int
        init(request: Entry, samples: [Sample], tokens: [Int], seq: SequenceID, done: Int, promptLogprobsFrom: Int?,
             wantsLast: Bool, order: Int) {
            self.request = request; self.samples = samples; self.tokens = tokens; self.seq = seq; self.done = done
            self.promptLogprobsFrom = promptLogprobsFrom; self.wantsLast = wantsLast; self.order = order
        }
    }

    final class Entry {
        let id: RequestID
        let request: Request
        let sink: Sink
        let samples: [Sample]
        var unfinished: Int
        var cachedTokens = 0
        var promptLogprobsSent = false
        var promptLogprobsJob: Job?
        init(id: RequestID, request: Request, sink: @escaping Sink, samples: [Sample]) {
            self.id = id; self.request = request; self.sink = sink; self.samples = samples; unfinished = samples.count
        }
    }

    /// Samples of one request waiting to (re)start; they share their context.
    struct Waiting {
        let request: Entry
        var samples: [Sample]
    }

    public let engine: Engine
    public let policy: SchedulingPolicy
    let kv: KVCache
    let cache: PrefixCache?
    let vocab: Int
    let C: Int
    var entries: [RequestID: Entry] = [:]
    var waiting: [Waiting] = []
    var live: [Sample] = []
    var jobs: [Job] = []
    var admissions = 0
    public private(set) var stats = BatchStats()
    private var counters = EngineMetrics()

    public init(engine: Engine, policy: SchedulingPolicy) {
        self.engine = engine
        self.policy = policy
        kv = engine.kv
        cache = policy == .noSharing ? nil : PrefixCache(pool: engine.kv.pool)
        vocab = engine.config.vocabularySize
        C = engine.kv.layout.blockTokenCount
        kv.pool.resetPeak()
    }

    /// Whether anything is waiting or running.
    public var hasWork: Bool { !entries.isEmpty }

    /// Queues `request`; its events (or its failure) go to `sink`, on the thread that steps.
    public func add(_ request: Request, id: RequestID, sink: @escaping Sink) {
        do {
            try engine.validate(request)
            try checkFits(request)
        } catch {
            counters.failedRequests += 1
            sink(.failure(error))
            return
        }
        let samples = (0..<request.n).map {
            Sample(index: $0, rng: SequenceRNG(seed: request.sampling.seed, index: request.rngIndexOffset + $0),
                   decoder: engine.tokenizer.map { IncrementalDecoder(tokenizer: $0) })
        }
        let entry = Entry(id: id, request: request, sink: sink, samples: samples)
        entries[id] = entry
        counters.promptTokens += request.prompt.count
        let items = policy == .noSharing ? samples.map { Waiting(request: entry, samples: [$0]) } : [Waiting(request: entry, samples: samples)]
        if policy == .prefixTree {
            // Prefix-tree order: lexicographic by prompt (a depth-first walk of the prompts' trie),
            // after equal prompts already queued.
            let at = waiting.firstIndex { request.prompt.lexicographicallyPrecedes($0.request.request.prompt) } ?? waiting.count
            waiting.insert(contentsOf: items, at: at)
        } else {
            waiting.append(contentsOf: items)
        }
    }

    /// A sample that could never fit the KV budget alone is refused up front.
    func checkFits(_ r: Request) throws {
        let need = (r.prompt.count + max(r.maxTokens, 1) + C - 1) / C
        if need > kv.pool.capacity {
            throw KVError.outOfMemory(neededBlocks: need, freeBlocks: kv.pool.capacity, budgetBytes: kv.pool.budgetBytes)
        }
    }

    /// Drops `id` wherever it is and releases its KV; its sink hears nothing more.
    public func abort(_ id: RequestID) {
        guard let e = entries[id] else { return }
        counters.abortedRequests += 1
        remove(e)
    }

    private func fail(_ e: Entry, _ error: any Error) {
        guard entries[e.id] != nil else { return }
        counters.failedRequests += 1
        remove(e)
        e.sink(.failure(error))
    }

    private func remove(_ e: Entry) {
        entries.removeValue(forKey: e.id)
        for x in e.samples { sampleOwner.removeValue(forKey: ObjectIdentifier(x)) }
        waiting.removeAll { $0.request === e }
        for s in e.samples { if let q = s.seq { kv.free(q); s.seq = nil } }
        live.removeAll { s in e.samples.contains { $0 === s } }
        for j in jobs where j.request === e { kv.free(j.seq) }
        jobs.removeAll { $0.request === e }
    }

    /// Releases the prefix cache (everything else must be done or aborted).
    public func close() {
        for e in Array(entries.values) { abort(e.id) }
        cache?.clear()
    }

    /// Counters and the KV state, for monitoring.
    public var metrics: EngineMetrics {
        var m = counters
        var running = Set<RequestID>()
        for x in live { running.insert(owner(x).id) }
        for j in jobs { running.insert(j.request.id) }
        m.runningRequests = running.count
        m.waitingRequests = Set(waiting.map(\.request.id)).subtracting(running).count
        m.kvBlocksTotal = kv.pool.capacity
        m.kvBlocksUsed = kv.pool.usedCount
        m.kvBlocksCached = cache?.blockCount ?? 0
        m.kvBlockBytes = kv.layout.blockByteCount
        m.steps = stats.steps
        return m
    }

    // MARK: - A step

    /// One model step: decode rows for every live sample, then prefill rows up to the token budget.
    public func step() {
        makeRoomForDecode()
        admit()
        var tokens: [Int32] = [], sequences: [SequenceID] = [], positions: [Int] = [], logitRows: [Int] = []
        for s in live {
            positions.append(try! kv.append(s.seq!, count: 1))  // room was made above
            tokens.append(Int32(s.next!)); sequences.append(s.seq!); logitRows.append(tokens.count - 1)
        }
        let decodeCount = tokens.count
        let maxRows = engine.options.maxBatchedTokens
        var budget = max(maxRows - decodeCount, min(32, maxRows))
        var chunks: [(job: Job, from: Int, count: Int, logitRows: [Int])] = []
        for j in jobs where budget > 0 {
            let count = min(budget, j.tokens.count - j.done)
            guard count > 0 else { continue }
            guard (try? kv.append(j.seq, count: count)) != nil || (evict((count + C - 1) / C + 1) && (try? kv.append(j.seq, count: count)) != nil) else { break }
            var rows: [Int] = []
            for p in j.done..<(j.done + count) {
                tokens.append(Int32(j.tokens[p])); sequences.append(j.seq); positions.append(p)
                if wantsLogits(j, p) { logitRows.append(tokens.count - 1); rows.append(p) }
            }
            chunks.append((j, j.done, count, rows))
            j.done += count
            budget -= count
        }
        if tokens.isEmpty {
            // Nothing ran: finish jobs that had nothing to compute, or unblock what is stuck.
            if jobs.contains(where: { $0.done == $0.tokens.count }) { finishCompletedJobs(); return }
            if jobs.count > 1 { preemptNewest() } else if let j = jobs.first { fail(j.request, outOfMemory((j.tokens.count - j.done + C - 1) / C)) } else { failStuck() }
            return
        }
        let start = DispatchTime.now()
        let logits = engine.step(tokens: tokens, sequences: sequences, positions: positions, logitRows: logitRows)
        let elapsed = seconds(since: start)
        if decodeCount > 0 { stats.decodeSeconds += elapsed; stats.decodeSteps += 1 } else { stats.prefillSeconds += elapsed }
        stats.steps += 1
        stats.decodeRows += decodeCount
        stats.prefillRows += tokens.count - decodeCount
        stats.kvPeakBytes = kv.pool.peakBytes

        for (i, s) in live.enumerated() {
            s.fed.append(s.next!)
            s.next = nil
            draw(s, logits: logits + i * vocab)
        }
        var row = decodeCount
        for chunk in chunks {
            for p in chunk.logitRows {
                let l = logits + row * vocab
                row += 1
                if let from = chunk.job.promptLogprobsFrom, p >= from - 1, p + 1 < chunk.job.tokens.count {
                    chunk.job.promptLogprobs.append(Sampler.logProbability(of: chunk.job.tokens[p + 1], logits: l, count: vocab))
                }
                if p == chunk.job.tokens.count - 1 && chunk.job.wantsLast {
                    chunk.job.lastLogits = Array(UnsafeBufferPointer(start: l, count: vocab))
                }
            }
        }
        retireFinished()
        finishCompletedJobs()
    }

    func wantsLogits(_ j: Job, _ p: Int) -> Bool {
        if j.wantsLast && p == j.tokens.count - 1 { return true }
        if let from = j.promptLogprobsFrom, p >= from - 1, p + 1 < j.tokens.count { return true }
        return false
    }

    // MARK: - Memory

    /// Evicts cached leaves until `blocks` are free; false when it cannot.
    @discardableResult
    func evict(_ blocks: Int) -> Bool {
        let short = blocks - kv.pool.freeCount
        if short > 0 { cache?.evict(short) }
        return kv.pool.freeCount >= blocks
    }

    /// Blocks the live samples take in the coming step (one each that starts a new block).
    var decodeGrowth: Int { live.reduce(0) { $0 + (kv.length($1.seq!) % C == 0 ? 1 : 0) } }

    /// Frees room for one more token of every live sample: evicts, then preempts the newest work.
    /// False (after failing it) when a lone sample cannot grow.
    func makeRoomForDecode() {
        while !evict(decodeGrowth) {
            guard live.count + jobs.count > 1 else {
                if let s = live.first { fail(owner(s), outOfMemory(1)) }
                return
            }
            preemptNewest()
        }
    }

    /// Preempts the most recently admitted prefill or sample.
    func preemptNewest() {
        let newestSample = live.max { $0.order < $1.order }
        let newestJob = jobs.max { $0.order < $1.order }
        if let j = newestJob, newestSample.map({ j.order > $0.order }) ?? true { preempt(j) } else if let s = newestSample { preempt(s) }
    }

    func outOfMemory(_ blocks: Int) -> KVError {
        KVError.outOfMemory(neededBlocks: blocks, freeBlocks: kv.pool.freeCount, budgetBytes: kv.pool.budgetBytes)
    }

    /// Back to the front of the queue; resumed later by recomputing its context (mostly from the cache).
    func preempt(_ s: Sample) {
        let e = owner(s)
        // Its KV stays findable in the cache (evicted only if memory is still short), so a resume
        // often recomputes nothing.
        cache?.insert(e.request.prompt + s.fed, blocks: kv.blocks(s.seq!))
        kv.free(s.seq!)
        s.seq = nil
        live.removeAll { $0 === s }
        waiting.insert(Waiting(request: e, samples: [s]), at: 0)
        counters.preemptions += 1
    }

    func preempt(_ j: Job) {
        if j.done > 0 { cache?.insert(Array(j.tokens.prefix(j.done)), blocks: kv.blocks(j.seq)) }
        kv.free(j.seq)
        jobs.removeAll { $0 === j }
        if j.request.promptLogprobsJob === j { j.request.promptLogprobsJob = nil }
        waiting.insert(Waiting(request: j.request, samples: j.samples), at: 0)
        counters.preemptions += 1
    }

    private var sampleOwner: [ObjectIdentifier: Entry] = [:]
    func owner(_ s: Sample) -> Entry { sampleOwner[ObjectIdentifier(s)]! }

    // MARK: - Admission

    /// Starts prefill jobs for waiting samples, in queue order, while batch slots, the step's token
    /// budget and memory allow. A request whose prompt a running prefill is about to compute waits
    /// for it (it will match it in the cache); it does not hold up the requests behind it.
    func admit() {
        var slots = engine.options.maxBatch - live.count - jobs.reduce(0) { $0 + $1.samples.count }
        var budget = max(engine.options.maxBatchedTokens - live.count, min(32, engine.options.maxBatchedTokens))
            - jobs.reduce(0) { $0 + $1.tokens.count - $1.done }
        var i = 0
        while i < waiting.count && slots > 0 && budget > 0 {
            let item = waiting[i]
            let e = item.request, r = e.request
            let first = item.samples[0]
            let context = r.prompt + first.fed
            let wantsLast = first.next == nil && r.maxTokens > 0
            let logprobsFrom = (r.promptLogprobsFrom != nil && !e.promptLogprobsSent && e.promptLogprobsJob == nil) ? r.promptLogprobsFrom : nil
            var limit = wantsLast ? context.count - 1 : context.count
            if let f = logprobsFrom { limit = min(limit, f - 1) }
            let match = cache?.match(context, limit: limit) ?? PrefixCache.Match(length: 0, blocks: [])
            if cache != nil, jobs.contains(where: { j in
                let shared = min(commonPrefixLength(context, j.tokens), limit)
                return shared > match.length && j.done < shared
            }) {
                i += 1
                continue
            }
            // Blocks it takes now: its prompt's new blocks (and the copied partial one), plus a
            // partial copy per sample; one block per live sample is kept for their growth. When
            // not all samples fit, fewer start now and the rest wait (the prompt stays cached).
            let promptBlocks: Int = (context.count + C - 1) / C - match.length / C
            let base: Int = promptBlocks + live.count + jobsStillNeed()
            var take = min(item.samples.count, slots)
            // The matched blocks are held while evicting, so eviction cannot take them.
            for b in match.blocks { kv.pool.retain(b) }
            defer { for b in match.blocks { kv.pool.release(b) } }
            if !evict(base + take) { take = min(take, kv.pool.freeCount - base) }
            guard take >= 1, let seq = try? kv.createSequence(prefix: match.blocks, length: match.length) else {
                if live.isEmpty && jobs.isEmpty {
                    fail(e, outOfMemory(base + 1))
                    continue
                }
                return
            }
            let samples = Array(item.samples.prefix(take))
            if take < item.samples.count {
                waiting[i].samples.removeFirst(take)
                i += 1
            } else {
                waiting.remove(at: i)
            }
            admissions += 1
            let job = Job(request: e, samples: samples, tokens: context, seq: seq, done: match.length,
                          promptLogprobsFrom: logprobsFrom, wantsLast: wantsLast, order: admissions)
            if logprobsFrom != nil { e.promptLogprobsJob = job }
            for s in samples { sampleOwner[ObjectIdentifier(s)] = e }
            if first.fed.isEmpty && first.next == nil {
                e.cachedTokens += match.length
                counters.cachedPromptTokens += match.length
            }
            jobs.append(job)
            slots -= take
            budget -= context.count - match.length
        }
    }

    /// Blocks the running prefills still have to allocate.
    func jobsStillNeed() -> Int {
        jobs.reduce(0) { $0 + ($1.tokens.count + C - 1) / C - kv.blocks($1.seq).count }
    }

    /// Nothing can run: the head of the queue can never fit beside what the cache cannot give back.
    func failStuck() {
        guard let item = waiting.first else { return }
        fail(item.request, outOfMemory((item.request.request.prompt.count + C - 1) / C))
    }

    // MARK: - Completion

    /// Jobs whose context is complete: prompt log-probabilities out, the prompt into the cache,
    /// then each sample takes its own sequence and its first token.
    func finishCompletedJobs() {
        for j in jobs where j.done == j.tokens.count && entries[j.request.id] != nil {
            jobs.removeAll { $0 === j }
            let e = j.request
            if let from = j.promptLogprobsFrom {
                e.promptLogprobsSent = true
                e.promptLogprobsJob = nil
                e.sink(.success(.promptLogprobs(from: from, logprobs: j.promptLogprobs)))
            }
            cache?.insert(j.tokens, blocks: kv.blocks(j.seq))
            if e.request.maxTokens == 0 {
                kv.free(j.seq)
                for s in j.samples { finish(s, e, reason: .length, flush: false) }
                continue
            }
            for (k, s) in j.samples.enumerated() {
                do {
                    if k == j.samples.count - 1 {
                        try kv.detachTail(j.seq)
                        s.seq = j.seq
                    } else {
                        s.seq = try kv.fork(j.seq)
                    }
                } catch {
                    // No room for a sample's own copy of the last block: the rest wait and recompute.
                    waiting.insert(Waiting(request: e, samples: Array(j.samples[k...])), at: 0)
                    kv.free(j.seq)
                    break
                }
                admissions += 1
                s.order = admissions
                live.append(s)
                if s.next == nil {
                    j.lastLogits.withUnsafeBufferPointer { draw(s, logits: $0.baseAddress!) }
                }
            }
        }
        retireFinished()
    }

    /// Samples `s`'s next token from `logits`, records it and ends the sample if it is done.
    func draw(_ s: Sample, logits: UnsafePointer<Float>) {
        let e = owner(s), r = e.request
        let t = Sampler.sample(logits: logits, count: vocab, parameters: r.sampling, rng: &s.rng)
        let eos = !r.ignoreEOS && engine.config.eosTokenIDs.contains(t)
        if eos || r.stopTokenIDs.contains(t) {
            finish(s, e, reason: eos ? .eos : .stop, flush: true)
            return
        }
        counters.generatedTokens += 1
        var delta = SampleDelta(index: s.index, tokens: [t], logprobs: [Sampler.logProbability(of: t, logits: logits, count: vocab)],
                                topLogprobs: r.topLogprobs > 0 ? [Sampler.topLogprobs(logits: logits, count: vocab, k: r.topLogprobs)] : [],
                                text: "")
        s.completionTokens += 1
        if var decoder = s.decoder {
            s.text += Array(((try? decoder.append(t)) ?? "").utf8)
            s.decoder = decoder
        }
        // Stop strings are matched on decoded text, also across token boundaries; the match and
        // anything after it are cut.
        if let cut = firstStop(s, r.stopStrings) {
            delta.text = takeText(s, upTo: cut)
            e.sink(.success(.delta(delta)))
            finish(s, e, reason: .stop, flush: false)
            return
        }
        if s.completionTokens >= r.maxTokens {
            if var decoder = s.decoder { s.text += Array(decoder.finish().utf8); s.decoder = decoder }
            delta.text = takeText(s, upTo: s.text.count)
            e.sink(.success(.delta(delta)))
            finish(s, e, reason: .length, flush: false)
            return
        }
        delta.text = takeText(s, upTo: s.text.count - heldBack(s, r.stopStrings))
        e.sink(.success(.delta(delta)))
        s.next = t
    }

    /// Byte offset of the earliest stop string in the sample's text (searching only where a new one can be).
    func firstStop(_ s: Sample, _ stops: [String]) -> Int? {
        var best: Int? = nil
        for stop in stops {
            let b = Array(stop.utf8)
            guard b.count <= s.text.count else { continue }
            var i = max(0, s.sent - b.count + 1)
            while i + b.count <= s.text.count {
                if s.text[i] == b[0] && s.text[i..<(i + b.count)].elementsEqual(b) { best = min(best ?? i, i); break }
                i += 1
            }
        }
        return best
    }

    /// Bytes at the end of the text that could still begin a stop string (not sent yet).
    func heldBack(_ s: Sample, _ stops: [String]) -> Int {
        var hold = 0
        for stop in stops {
            let b = Array(stop.utf8)
            for k in stride(from: min(b.count - 1, s.text.count - s.sent), to: hold, by: -1) where s.text.suffix(k).elementsEqual(b.prefix(k)) {
                hold = k
                break
            }
        }
        return hold
    }

    func takeText(_ s: Sample, upTo end: Int) -> String {
        guard end > s.sent else { return "" }
        let out = String(decoding: s.text[s.sent..<end], as: UTF8.self)
        s.sent = end
        return out
    }

    /// Ends a sample: the text held back goes out when `flush` (ended by a token, so it is final),
    /// its sequence goes into the cache and its KV is released.
    func finish(_ s: Sample, _ e: Entry, reason: FinishReason, flush: Bool) {
        s.finished = true
        if flush {
            if var decoder = s.decoder { s.text += Array(decoder.finish().utf8); s.decoder = decoder }
            let rest = takeText(s, upTo: s.text.count)
            if !rest.isEmpty { e.sink(.success(.delta(SampleDelta(index: s.index, tokens: [], logprobs: [], topLogprobs: [], text: rest)))) }
        }
        if let q = s.seq {
            cache?.insert(e.request.prompt + s.fed, blocks: kv.blocks(q))
            kv.free(q)
            s.seq = nil
        }
        e.sink(.success(.sampleFinished(index: s.index, reason: reason)))
        e.unfinished -= 1
        if e.unfinished == 0 {
            entries.removeValue(forKey: e.id)
            for x in e.samples { sampleOwner.removeValue(forKey: ObjectIdentifier(x)) }
            counters.finishedRequests += 1
            e.sink(.success(.finished(RequestUsage(promptTokens: e.request.prompt.count,
                                                   completionTokens: e.samples.reduce(0) { $0 + $1.completionTokens },
                                                   cachedPromptTokens: e.cachedTokens))))
        }
    }

    func retireFinished() {
        live.removeAll { $0.finished }
    }
}

func commonPrefixLength(_ a: [Int], _ b: [Int]) -> Int {
    var i = 0
    let n = min(a.count, b.count)
    while i < n && a[i] == b[i] { i += 1 }
    return i
}

extension Engine {
    /// Checks one request against the model: token ids, context, sampling values. Messages name
    /// the request's fields (an HTTP client never typed a CLI flag).
    public func validate(_ r: Request) throws {
        guard !r.prompt.isEmpty else { throw EngineError.invalidRequest("the prompt is empty") }
        guard r.n >= 1 else { throw EngineError.invalidRequest("n must be at least 1, got \(r.n)") }
        if let from = r.promptLogprobsFrom {
            guard from >= 1 && from <= r.prompt.count else {
                throw EngineError.invalidRequest("prompt log-probabilities start at a token in 1...\(r.prompt.count), got \(from)")
            }
            guard r.maxTokens >= 0 else { throw EngineError.invalidRequest("max_tokens must be at least 0, got \(r.maxTokens)") }
        } else {
            guard r.maxTokens >= 1 else { throw EngineError.invalidRequest("max_tokens must be at least 1, got \(r.maxTokens)") }
        }
        guard r.topLogprobs >= 0 && r.topLogprobs <= 20 else { throw EngineError.invalidRequest("logprobs must be in 0...20, got \(r.topLogprobs)") }
        try validate(tokens: r.prompt, what: "prompt")
        for t in r.stopTokenIDs { try validate(tokens: [t], what: "stop token") }
        try validateContext(r.prompt.count, what: "prompt")
        try validateContext(r.prompt.count + r.maxTokens, what: "prompt (\(r.prompt.count) tokens) + max_tokens (\(r.maxTokens))")
        if !r.stopStrings.isEmpty && tokenizer == nil {
            throw EngineError.invalidRequest("stop strings need a tokenizer, and this model has none (use stop token ids)")
        }
        guard r.stopStrings.allSatisfy({ !$0.isEmpty }) else { throw EngineError.invalidRequest("stop: empty stop string") }
    }
}
