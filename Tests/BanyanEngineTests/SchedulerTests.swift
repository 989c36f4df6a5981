import Foundation
import Testing
import BanyanKernels
import BanyanKV
import BanyanModel
import BanyanEngine
import BanyanTestSupport

/// A shuffled few-shot-like batch over stories260k: a shared block, a few shared sub-blocks, many
/// questions, some with several samples; token prompts.
func fewShotBatch(seed: UInt64, temperature: Float) -> [Request] {
    var rng = SeededRNG(seed: seed)
    let shots = storyPrompt + storyPrompt.reversed()  // 80 shared tokens
    var out: [Request] = []
    for q in 0..<14 {
        let group = q % 3
        let sub = (0..<(7 * group)).map { 10 + ($0 * 13 + group) % 400 }
        let question = (0..<Int.random(in: 1...9, using: &rng)).map { _ in Int.random(in: 3..<500, using: &rng) }
        var r = Request(prompt: (q == 5 ? [] : shots) + sub + question)
        r.n = q % 4 == 0 ? 3 : 1
        r.maxTokens = Int.random(in: 1...10, using: &rng)
        r.sampling = SamplingParameters(temperature: temperature, topK: 40, topP: 0.9, seed: UInt64(q))
        r.ignoreEOS = q % 2 == 0
        out.append(r)
    }
    out.shuffle(using: &rng)
    return out
}

func runAll(_ engine: Engine, _ requests: [Request], policy: SchedulingPolicy) -> ([BatchOutput?], BatchStats) {
    var outputs = [BatchOutput?](repeating: nil, count: requests.count)
    let stats = engine.runBatch(requests, policy: policy) { i, result in outputs[i] = try? result.get() }
    return (outputs, stats)
}

@Suite("Batch scheduler")
struct SchedulerTests {
    @Test("every policy gives each request exactly what running it alone gives",
          arguments: [(SchedulingPolicy.prefixTree, Float(0)), (.prefixTree, 1), (.fcfsLRU, 1), (.noSharing, 0.7)])
    func policiesMatchAlone(_ policy: SchedulingPolicy, _ temperature: Float) throws {
        let engine = try makeEngine("builtin:stories260k", maxBatch: 5)
        let requests = fewShotBatch(seed: 3, temperature: temperature)
        let (outputs, stats) = runAll(engine, requests, policy: policy)
        for (i, r) in requests.enumerated() {
            var alone = Request(prompt: r.prompt)
            alone.n = r.n; alone.maxTokens = r.maxTokens; alone.sampling = r.sampling; alone.ignoreEOS = r.ignoreEOS
            let expected = try engine.generate(alone).completions
            let got = try #require(outputs[i]).completions
            #expect(got.map(\.tokens) == expected.map(\.tokens), "request \(i)")
            #expect(got.map(\.logprobs) == expected.map(\.logprobs), "request \(i)")
            #expect(got.map(\.finishReason) == expected.map(\.finishReason), "request \(i)")
        }
        #expect(engine.kv.pool.usedCount == 0)
        #expect(stats.steps > 0)
    }

    @Test("the prefix tree prefills each shared run once; no sharing prefills every sample's prompt")
    func prefillWork() throws {
        let engine = try makeEngine("builtin:stories260k")
        let requests = fewShotBatch(seed: 4, temperature: 0)
        // Tokens of the prompts' trie: each distinct prefix is one token to compute.
        let uniqueTokens = Set(requests.flatMap { r in (1...r.prompt.count).map { Array(r.prompt.prefix($0)) } }).count
        #expect(runAll(engine, requests, policy: .prefixTree).1.prefillRows == uniqueTokens)
        #expect(runAll(engine, requests, policy: .noSharing).1.prefillRows == requests.reduce(0) { $0 + $1.prompt.count * $1.n })
        let lru = runAll(engine, requests, policy: .fcfsLRU).1.prefillRows
        #expect(lru < requests.reduce(0) { $0 + $1.prompt.count })
        #expect(lru >= uniqueTokens)
    }

    /// Token batching: the prefills of several queued prompts share a step (within the step's
    /// token budget) instead of one prompt per step, under every policy; outputs stay as alone.
    @Test("several prompts are prefilled in one step", arguments: [SchedulingPolicy.prefixTree, .fcfsLRU, .noSharing])
    func tokenBatching(_ policy: SchedulingPolicy) throws {
        let engine = try makeEngine("builtin:stories260k")
        let requests = (0..<16).map { q -> Request in
            var r = Request(prompt: storyPrompt + (0..<12).map { 3 + (q * 31 + $0 * 7) % 500 })
            r.maxTokens = 3; r.ignoreEOS = true; r.sampling = SamplingParameters(temperature: 0)
            return r
        }
        let (outputs, stats) = runAll(engine, requests, policy: policy)
        // One prompt per step would take at least 16 prefill steps; 16 prompts of ≤ 52 tokens fit
        // a 256-row budget in 4 steps (plus the shared prefix first, plus 3 decode steps).
        #expect(stats.steps <= 10, "\(stats.steps) steps")
        for (i, r) in requests.enumerated() {
            var alone = Request(prompt: r.prompt)
            alone.maxTokens = r.maxTokens; alone.sampling = r.sampling; alone.ignoreEOS = true
            #expect(try #require(outputs[i]).completions.map(\.tokens) == engine.generate(alone).completions.map(\.tokens))
        }
        #expect(engine.kv.pool.usedCount == 0)
    }

    /// FCFS+LRU counts only the rows a request will compute against the step budget: prompts that
    /// reuse a cached 200-token prefix need their own 10 rows each, so the queued ones share a step
    /// instead of each claiming its whole prompt's 210 rows (one prompt per step).
    @Test("fcfs-lru packs cache-hitting prompts into one step's budget")
    func lruBudgetCountsCachedRows() throws {
        let engine = try makeEngine("builtin:stories260k")
        let shared = (0..<200).map { 3 + ($0 * 37) % 500 }
        let requests = (0..<24).map { q -> Request in
            var r = Request(prompt: shared + (0..<10).map { 3 + (q * 29 + $0 * 11) % 500 })
            r.maxTokens = 3; r.ignoreEOS = true; r.sampling = SamplingParameters(temperature: 0)
            return r
        }
        let (outputs, stats) = runAll(engine, requests, policy: .fcfsLRU)
        // Whole prompts counted: two prompts a step, ≥ 12 prefill steps (measured 15 in all).
        // Cached rows skipped: the first prompt, then the other 23 (230 rows) in one or two steps,
        // and 3 decode steps.
        #expect(stats.steps <= 9, "\(stats.steps) steps")
        // The first prompt computes the shared 200 tokens; the others wait for it rather than
        // compute them again, then reuse them (matching is token-granular) and compute their own 10.
        #expect(stats.prefillRows == 210 + 23 * 10, "\(stats.prefillRows) prefill rows")
        for (i, r) in requests.enumerated() {
            var alone = Request(prompt: r.prompt)
            alone.maxTokens = r.maxTokens; alone.sampling = r.sampling; alone.ignoreEOS = true
            #expect(try #require(outputs[i]).completions.map(\.tokens) == engine.generate(alone).completions.map(\.tokens))
        }
        #expect(engine.kv.pool.usedCount == 0)
    }

    @Test("echo gives the prompt's log-probabilities, equal to scoring the prompt")
    func echo() throws {
        let engine = try makeEngine("builtin:stories260k")
        var requests = fewShotBatch(seed: 5, temperature: 0)
        for i in requests.indices { requests[i].promptLogprobsFrom = i % 2 == 0 ? 1 : nil }
        let (outputs, _) = runAll(engine, requests, policy: .prefixTree)
        for (i, r) in requests.enumerated() where r.promptLogprobsFrom != nil {
            let lp = try #require(outputs[i]?.promptLogprobs)
            let scored = try engine.score(prompt: [r.prompt[0]], continuations: [Array(r.prompt.dropFirst())]).scores[0].logprobs
            #expect(lp == scored, "request \(i)")
        }
    }

    @Test("top logprobs are sorted, include the greedy choice first, and sum below one")
    func topLogprobs() throws {
        let engine = try makeEngine("builtin:stories260k")
        var r = Request(prompt: storyPrompt)
        r.maxTokens = 6; r.topLogprobs = 5; r.sampling.temperature = 0; r.ignoreEOS = true
        let (outputs, _) = runAll(engine, [r], policy: .prefixTree)
        let c = try #require(outputs[0]).completions[0]
        #expect(c.topLogprobs.count == c.tokens.count)
        for (t, top) in zip(c.tokens, c.topLogprobs) {
            #expect(top.count == 5)
            #expect(top[0].token == t)
            #expect(zip(top, top.dropFirst()).allSatisfy { $0.logprob >= $1.logprob })
            #expect(top.reduce(0) { $0 + exp($1.logprob) } <= 1 + 1e-9)
        }
    }

    @Test("an invalid request fails alone; the rest of the batch completes")
    func invalidAlone() throws {
        let engine = try makeEngine("builtin:stories260k")
        var requests = fewShotBatch(seed: 6, temperature: 0)
        requests[2].prompt = [1, 9999]
        requests[4].maxTokens = 0
        var failures: [Int] = []
        var successes = 0
        engine.runBatch(requests) { i, result in
            switch result {
            case .success: successes += 1
            case .failure(let e): failures.append(i); #expect(!String(describing: e).isEmpty)
            }
        }
        #expect(failures.sorted() == [2, 4])
        #expect(successes == requests.count - 2)
        #expect(engine.kv.pool.usedCount == 0)
    }
}
