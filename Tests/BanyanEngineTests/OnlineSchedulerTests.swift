import Foundation
import Testing
import BanyanKernels
import BanyanKV
import BanyanModel
import BanyanEngine
import BanyanTokenizer
import BanyanTestSupport

/// What a request's events add up to.
struct Collected {
    var samples: [Int: (tokens: [Int], logprobs: [Double], text: String, reason: FinishReason?)] = [:]
    var promptLogprobs: [Double]?
    var usage: RequestUsage?
    var failed = false

    mutating func take(_ result: Result<RequestEvent, any Error>) {
        switch result {
        case .failure: failed = true
        case .success(.promptLogprobs(_, let lp)): promptLogprobs = lp
        case .success(.delta(let d)):
            var s = samples[d.index] ?? ([], [], "", nil)
            s.tokens += d.tokens; s.logprobs += d.logprobs; s.text += d.text
            samples[d.index] = s
        case .success(.sampleFinished(let k, let reason)):
            var s = samples[k] ?? ([], [], "", nil)
            s.reason = reason
            samples[k] = s
        case .success(.finished(let u)): usage = u
        }
    }

    /// Comparable summary: per sample tokens, logprobs and finish reason, then prompt logprobs.
    var summary: String {
        samples.keys.sorted().map { k in "\(k): \(samples[k]!.tokens) \(samples[k]!.logprobs) \(String(describing: samples[k]!.reason))" }
            .joined(separator: "\n") + "\nprompt \(String(describing: promptLogprobs))"
    }
}

/// Requests over one shared story prefix: distinct tails, mixed n, lengths, sampling, stop ids, echo.
func onlineRequests(_ rng: inout SeededRNG, count: Int) -> [Request] {
    (0..<count).map { q in
        let tail = (0..<Int.random(in: 0...12, using: &rng)).map { _ in Int.random(in: 3..<500, using: &rng) }
        var r = Request(prompt: (q % 5 == 4 ? Array(storyPrompt.prefix(9)) : storyPrompt) + tail)
        r.n = Int.random(in: 1...3, using: &rng)
        r.maxTokens = Int.random(in: 1...16, using: &rng)
        r.sampling = SamplingParameters(temperature: q % 3 == 0 ? 0 : 1, topK: q % 2 == 0 ? 0 : 50, seed: UInt64(q))
        r.ignoreEOS = q % 2 == 0
        if q % 4 == 1 { r.stopTokenIDs = [Int.random(in: 3..<500, using: &rng)] }
        if q % 6 == 2 { r.promptLogprobsFrom = 1 }
        if q % 7 == 3 { r.topLogprobs = 3 }
        return r
    }
}

func runAlone(_ engine: Engine, _ r: Request) -> String {
    let s = Scheduler(engine: engine, policy: .noSharing)
    var c = Collected()
    s.add(r, id: RequestID(0)) { c.take($0) }
    while s.hasWork { s.step() }
    s.close()
    return c.summary
}

@Suite("Online scheduler")
struct OnlineSchedulerTests {
    @Test("a request's output is bitwise what it gives alone, whatever arrives, runs or is cancelled around it",
          arguments: [(SchedulingPolicy.fcfsLRU, 1 << 16, UInt64(1)), (.fcfsLRU, 40 * 20, 2), (.prefixTree, 40 * 24, 3),
                      (.noSharing, 40 * 30, 4), (.fcfsLRU, 1 << 16, 5)])
    func arrivalsAndCancellations(_ policy: SchedulingPolicy, _ kvKiB: Int, _ seed: UInt64) throws {
        print("seed \(seed), policy \(policy.rawValue), KV budget \(kvKiB) KiB")
        let engine = try makeEngine("builtin:stories260k", maxBatch: 6)
        var rng = SeededRNG(seed: seed)
        let requests = onlineRequests(&rng, count: 24)
        let expected = requests.map { runAlone(engine, $0) }
        #expect(engine.kv.pool.usedCount == 0)

        // The same requests again, online, on a budget small enough (in some arguments) to force
        // eviction and preemption: random arrival steps, a few cancelled at random times.
        let small = try makeEngine("builtin:stories260k", maxBatch: 6, maxKVBytes: kvKiB * 1024)
        let scheduler = Scheduler(engine: small, policy: policy)
        var collected = [Collected](repeating: Collected(), count: requests.count)
        var cancelled = Set<Int>()
        var next = 0
        var steps = 0
        while next < requests.count || scheduler.hasWork {
            while next < requests.count && (Int.random(in: 0..<3, using: &rng) == 0 || !scheduler.hasWork) {
                let i = next
                scheduler.add(requests[i], id: RequestID(i)) { collected[i].take($0) }
                next += 1
            }
            if Int.random(in: 0..<12, using: &rng) == 0 {
                let victim = Int.random(in: 0..<next, using: &rng)
                if collected[victim].usage == nil && !collected[victim].failed { cancelled.insert(victim) }
                scheduler.abort(RequestID(victim))
            }
            scheduler.step()
            steps += 1
            #expect(steps < 5000, "the scheduler makes progress")
            if steps >= 5000 { break }
        }
        for i in requests.indices where !cancelled.contains(i) {
            #expect(!collected[i].failed, "request \(i) failed")
            #expect(collected[i].usage != nil, "request \(i) finished")
            #expect(collected[i].summary == expected[i], "request \(i)")
        }
        for i in cancelled { #expect(collected[i].usage == nil, "request \(i) was cancelled before it finished") }
        let m = scheduler.metrics
        #expect(m.runningRequests == 0 && m.waitingRequests == 0)
        #expect(small.kv.pool.usedCount == m.kvBlocksCached, "only the prefix cache holds blocks")
        if policy != .noSharing && kvKiB >= 4096 { #expect(m.cachedPromptTokens > 0, "later requests reuse the shared prefix") }
        scheduler.close()
        #expect(small.kv.pool.usedCount == 0)
    }

    @Test("a small KV budget preempts and recomputes, and outputs stay exact")
    func preemption() throws {
        let engine = try makeEngine("builtin:stories260k", maxBatch: 8)
        var requests: [Request] = []
        for q in 0..<8 {
            var r = Request(prompt: storyPrompt + [3 + q])
            r.maxTokens = 60; r.ignoreEOS = true; r.sampling = SamplingParameters(temperature: 1, seed: UInt64(q))
            requests.append(r)
        }
        let expected = requests.map { runAlone(engine, $0) }
        // 40 KiB blocks of 32 tokens: each sample grows to 4 blocks; 14 blocks cannot hold all 8.
        let small = try makeEngine("builtin:stories260k", maxBatch: 8, maxKVBytes: 14 * 40 * 1024)
        let scheduler = Scheduler(engine: small, policy: .fcfsLRU)
        var collected = [Collected](repeating: Collected(), count: requests.count)
        for (i, r) in requests.enumerated() { scheduler.add(r, id: RequestID(i)) { collected[i].take($0) } }
        var steps = 0
        while scheduler.hasWork && steps < 5000 { scheduler.step(); steps += 1 }
        for i in requests.indices { #expect(collected[i].summary == expected[i], "request \(i)") }
        #expect(scheduler.metrics.preemptions > 0)
        scheduler.close()
        #expect(small.kv.pool.usedCount == 0)
    }

    @Test("a later request with the same prompt prefix reuses the cached KV of an earlier one")
    func prefixReuse() throws {
        let engine = try makeEngine("builtin:stories260k")
        let scheduler = Scheduler(engine: engine, policy: .fcfsLRU)
        var first = Collected(), second = Collected()
        var a = Request(prompt: storyPrompt + [5, 6]); a.maxTokens = 3
        var b = Request(prompt: storyPrompt + [7, 8, 9]); b.maxTokens = 3
        scheduler.add(a, id: RequestID(0)) { first.take($0) }
        while scheduler.hasWork { scheduler.step() }
        scheduler.add(b, id: RequestID(1)) { second.take($0) }
        while scheduler.hasWork { scheduler.step() }
        #expect(first.usage?.cachedPromptTokens == 0)
        #expect(second.usage?.cachedPromptTokens == storyPrompt.count)
        #expect(second.summary == runAlone(engine, b))
        scheduler.close()
    }

    @Test("stop strings: text is held back while it may become a stop string, and cut at it")
    func streamingStops() throws {
        let pool = ThreadPool(threadCount: 1)
        let folder = TextReference.folder.path
        let engine = try Engine(model: try Model.load(folder, threads: pool), tokenizer: try Tokenizer.load(path: folder), threads: pool)
        let tok = try #require(engine.tokenizer)
        var r = Request(prompt: try engine.encodePrompt("Once upon a time"))
        r.maxTokens = 24; r.ignoreEOS = true; r.sampling = SamplingParameters(temperature: 0)
        let free = try engine.generate(r).completions[0]
        let text = try #require(free.text)
        // A stop string from the middle of the free-running text (spanning tokens where possible).
        let chars = Array(text)
        guard chars.count >= 8 else { return }
        let stop = String(chars[(chars.count / 2)..<(chars.count / 2 + 3)])
        r.stopStrings = [stop]
        let scheduler = Scheduler(engine: engine, policy: .fcfsLRU)
        var deltas: [String] = []
        var c = Collected()
        scheduler.add(r, id: RequestID(0)) { result in
            if case .success(.delta(let d)) = result { deltas.append(d.text) }
            c.take(result)
        }
        while scheduler.hasWork { scheduler.step() }
        let streamed = deltas.joined()
        let cut = try #require(text.range(of: stop))
        #expect(streamed == String(text[..<cut.lowerBound]))
        #expect(c.samples[0]?.reason == .stop)
        // No delta ever carried text past what was final: each prefix of the stream is a prefix of the result.
        var sofar = ""
        for d in deltas { sofar += d; #expect(streamed.hasPrefix(sofar)) }
        #expect(!tok.encode(stop, addSpecialTokens: false).isEmpty)
        scheduler.close()
    }
}

@Suite("Engine loop")
struct EngineLoopTests {
    @Test("concurrent submissions each equal running alone; a cancelled stream releases its KV")
    func concurrentSubmit() async throws {
        let engine = try makeEngine("builtin:stories260k", maxBatch: 16)
        var rng = SeededRNG(seed: 11)
        let requests = onlineRequests(&rng, count: 16)
        let expected = requests.map { runAlone(engine, $0) }
        let loop = EngineLoop(engine: engine, policy: .fcfsLRU)
        let results = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for (i, r) in requests.enumerated() {
                group.addTask {
                    var c = Collected()
                    for try await event in loop.submit(r) { c.take(.success(event)) }
                    return (i, c.summary)
                }
            }
            // One more that is cancelled after its first token.
            group.addTask {
                var r = Request(prompt: storyPrompt); r.maxTokens = 400; r.ignoreEOS = true
                for try await event in loop.submit(r) { if case .delta = event { break } }
                return (-1, "")
            }
            var out: [Int: String] = [:]
            for try await (i, s) in group { out[i] = s }
            return out
        }
        for i in requests.indices { #expect(results[i] == expected[i], "request \(i)") }
        // The abort reaches the loop within a step — unless the engine, running ahead of a slow
        // consumer, had already finished that request; either way it is gone and its KV released.
        for _ in 0..<200 where loop.metrics.abortedRequests + loop.metrics.finishedRequests < requests.count + 1 {
            try await Task.sleep(for: .milliseconds(10))
        }
        let m = loop.metrics
        #expect(m.abortedRequests + m.finishedRequests == requests.count + 1)
        #expect(m.runningRequests == 0)
        #expect(m.kvBlocksUsed == m.kvBlocksCached)
        await loop.shutdown()
    }

    @Test("invalid requests fail their stream with the field named; a full queue is overloaded")
    func errors() async throws {
        let engine = try makeEngine("builtin:stories260k")
        let loop = EngineLoop(engine: engine, policy: .fcfsLRU, maxWaiting: 0)
        var bad = Request(prompt: [1, 2]); bad.maxTokens = 0
        await #expect(throws: EngineError.self) { for try await _ in loop.submit(bad) {} }
        let ok = Request(prompt: [1, 2])
        do {
            for try await _ in loop.submit(ok) {}
            Issue.record("expected overloaded")
        } catch let e as EngineError {
            guard case .overloaded = e else { Issue.record("expected overloaded, got \(e)"); return }
        }
        await loop.shutdown()
    }
}
