import Foundation
import Testing
import BanyanKernels
import BanyanKV
import BanyanAttention
import BanyanModel
import BanyanEngine
import BanyanTestSupport

/// A fixed prompt of natural stories260k text (its own greedy output).
let storyPrompt = [1, 330, 361, 140, 473, 465, 466, 290, 341, 408, 323, 414, 339, 260, 430, 430, 418, 303, 293, 427,
                   430, 341, 341, 408, 323, 414, 339, 260, 430, 283, 303, 422, 290, 341, 408, 323, 414, 339, 260, 430]

func request(_ prompt: [Int], n: Int = 1, maxTokens: Int = 12, temperature: Float = 0, seed: UInt64 = 0) -> Request {
    var r = Request(prompt: prompt)
    r.n = n
    r.maxTokens = maxTokens
    r.sampling = SamplingParameters(temperature: temperature, topK: 0, topP: 0.95, minP: 0.01, seed: seed)
    r.ignoreEOS = true
    return r
}

@Suite("Batch invariance and sharing")
struct InvarianceTests {
    @Test("greedy --n 8 gives 8 completions bitwise equal to --n 1", arguments: [AttentionMode.hydragen, .baseline], DType.allCases)
    func greedyN(_ mode: AttentionMode, kvDType: DType) throws {
        let engine = try makeEngine("builtin:stories260k", attention: mode, kvDType: kvDType)
        #expect(engine.kv.layout.dtype == kvDType)
        let one = try engine.generate(request(storyPrompt, n: 1)).completions[0]
        let eight = try engine.generate(request(storyPrompt, n: 8)).completions
        #expect(eight.count == 8)
        for (i, c) in eight.enumerated() {
            #expect(c.index == i && c.sampleIndex == i && c.suffixIndex == 0)
            #expect(c.tokens == one.tokens)
            #expect(c.logprobs == one.logprobs)
        }
    }

    @Test("sampled --n 8 --seed S: completion i equals --n 3's completion i", arguments: [AttentionMode.hydragen, .baseline])
    func sampledN(_ mode: AttentionMode) throws {
        let engine = try makeEngine("builtin:stories260k", attention: mode)
        let eight = try engine.generate(request(storyPrompt, n: 8, maxTokens: 16, temperature: 1, seed: 7)).completions
        let three = try engine.generate(request(storyPrompt, n: 3, maxTokens: 16, temperature: 1, seed: 7)).completions
        for i in 0..<3 {
            #expect(eight[i].tokens == three[i].tokens)
            #expect(eight[i].logprobs == three[i].logprobs)
        }
        // Different indices draw from different streams.
        #expect(Set(eight.map(\.tokens)).count > 1)
    }

    @Test("every precision (bf16 products included) is batch-invariant", arguments: Precision.allCases)
    func precisionInvariance(_ precision: Precision) throws {
        let engine = try makeEngine("synthetic:tiny", precision: precision)
        let prompt = (0..<70).map { 3 + $0 * 7 % 500 }
        let one = try engine.generate(request(prompt, n: 1, maxTokens: 10, temperature: 0.9, seed: 2)).completions[0]
        let many = try engine.generate(request(prompt, n: 6, maxTokens: 10, temperature: 0.9, seed: 2)).completions
        #expect(many[0].tokens == one.tokens)
        #expect(many[0].logprobs == one.logprobs)
    }

    /// Integer products against quantized weights (every packed layout: Q8_0, Q4_0, Q5_0 and Q4_K
    /// here) keep the property: a prompt's samples decode in batches of 6 with the bits of a lone one,
    /// and scoring a continuation gives the bits of prefilling it in a batch beside others.
    @Test("integer products on quantized weights are batch-invariant", arguments: ["q8_0", "q4_0", "q5_0", "q4_k"])
    func quantizedInvariance(_ type: String) throws {
        let engine = try makeEngine("synthetic:tiny:\(type)", precision: .fast)
        #expect(engine.model.usesIntegerProducts)
        let prompt = (0..<70).map { 3 + $0 * 7 % 500 }
        let one = try engine.generate(request(prompt, n: 1, maxTokens: 10, temperature: 0.9, seed: 2)).completions[0]
        let many = try engine.generate(request(prompt, n: 6, maxTokens: 10, temperature: 0.9, seed: 2)).completions
        #expect(many[0].tokens == one.tokens)
        #expect(many[0].logprobs == one.logprobs)
        let (alone, _) = try engine.score(prompt: prompt, continuations: [[5, 6, 7]])
        let (together, _) = try engine.score(prompt: prompt, continuations: [[9, 9], [5, 6, 7], [11]])
        #expect(alone[0].logprobs == together[1].logprobs)
    }

    @Test("samples beyond the batch size run in waves with identical results")
    func waves() throws {
        let wide = try makeEngine("builtin:stories260k", maxBatch: 256)
        let narrow = try makeEngine("builtin:stories260k", maxBatch: 3)
        let a = try wide.generate(request(storyPrompt, n: 7, temperature: 0.8, seed: 3)).completions
        let b = try narrow.generate(request(storyPrompt, n: 7, temperature: 0.8, seed: 3)).completions
        #expect(a.map(\.tokens) == b.map(\.tokens))
        #expect(a.map(\.logprobs) == b.map(\.logprobs))
        #expect(narrow.kv.pool.usedCount == 0)
    }

    @Test("hydragen and baseline agree (bitwise, by construction) on generation and scoring")
    func modesAgree() throws {
        let h = try makeEngine("builtin:stories260k", attention: .hydragen)
        let b = try makeEngine("builtin:stories260k", attention: .baseline)
        let rh = try h.generate(request(storyPrompt, n: 4, maxTokens: 20, temperature: 1, seed: 11)).completions
        let rb = try b.generate(request(storyPrompt, n: 4, maxTokens: 20, temperature: 1, seed: 11)).completions
        #expect(rh.map(\.tokens) == rb.map(\.tokens))
        #expect(rh.map(\.logprobs) == rb.map(\.logprobs))
        let conts = [[430, 341], [283, 303, 422, 290], [465]]
        #expect(try h.score(prompt: storyPrompt, continuations: conts).scores.map(\.logprobs)
                == b.score(prompt: storyPrompt, continuations: conts).scores.map(\.logprobs))
    }

    @Test("hierarchical prompts: completion (i, j) equals generating prompt + suffix i alone")
    func hierarchy() throws {
        let engine = try makeEngine("builtin:stories260k")
        let r = request(Array(storyPrompt.prefix(35)), n: 3)
        let suffixes = [[430, 341, 341], [283], [303, 422, 290, 341, 408]]
        let result = try engine.generate(r, suffixes: suffixes)
        #expect(result.completions.count == 9)
        for c in result.completions {
            #expect(c.index == c.suffixIndex * 3 + c.sampleIndex)
            let alone = try engine.generate(request(Array(storyPrompt.prefix(35)) + suffixes[c.suffixIndex])).completions[0]
            #expect(c.tokens == alone.tokens)
            #expect(c.logprobs == alone.logprobs)
        }
        #expect(result.promptTokens == 35 + 9)
    }

    @Test("scoring several continuations at once equals scoring each alone")
    func scoreBatch() throws {
        let engine = try makeEngine("builtin:stories260k")
        let conts = [[430, 341, 341, 408], [283], [303, 422, 290], [465, 466, 290, 341, 408, 323, 414, 339, 260, 430, 430]]
        let together = try engine.score(prompt: storyPrompt, continuations: conts).scores
        for (i, c) in conts.enumerated() {
            let alone = try engine.score(prompt: storyPrompt, continuations: [c]).scores[0]
            #expect(together[i].tokens == c)
            #expect(together[i].logprobs == alone.logprobs)
        }
    }

    @Test("the prompt's KV is stored once: n samples hold about one prompt plus n suffixes")
    func kvSharing() throws {
        let engine = try makeEngine("synthetic:tiny")
        let prompt = (0..<1000).map { 3 + $0 % 500 }
        let one = try engine.generate(request(prompt, n: 1, maxTokens: 8)).kvPeakBytes
        let many = try engine.generate(request(prompt, n: 16, maxTokens: 8)).kvPeakBytes
        let block = engine.kv.layout.blockByteCount
        // One prompt (32 blocks) + per sample its copied partial block and the block(s) its 8 new tokens need.
        #expect(many <= one + 16 * 2 * block)
        #expect(many < 2 * one)
        #expect(engine.kv.pool.usedCount == 0, "every block returned after the request")
    }

    @Test("a tight KV budget makes samples wait for memory (same outputs); a prompt that cannot fit is a clear error",
          arguments: Precision.allCases)
    func budget(precision: Precision) throws {
        let pool = ThreadPool(threadCount: 2)
        let model = try Model.load("synthetic:tiny", threads: pool)
        let kvDType = EngineOptions.defaultKVDType(precision: precision)
        let layout = KVLayout(layerCount: model.config.layerCount, kvHeadCount: model.config.kvHeadCount, headDim: model.config.headDim,
                              dtype: kvDType)
        var options = EngineOptions()
        options.precision = precision
        options.maxKVBytes = layout.blockByteCount * 12
        let tight = try Engine(model: model, threads: pool, options: options)
        #expect(tight.kv.layout.dtype == kvDType)
        let roomy = try makeEngine("synthetic:tiny", precision: precision)
        let prompt = (0..<200).map { 3 + $0 }  // 7 blocks; each sample needs 2 more of its own
        let a = try tight.generate(request(prompt, n: 8, maxTokens: 40, temperature: 1, seed: 5))
        let b = try roomy.generate(request(prompt, n: 8, maxTokens: 40, temperature: 1, seed: 5))
        #expect(a.completions.map(\.tokens) == b.completions.map(\.tokens))
        #expect(a.kvPeakBytes <= options.maxKVBytes)
        #expect(tight.kv.pool.usedCount == 0)
        do {
            _ = try tight.generate(request((0..<500).map { 3 + $0 }, n: 1, maxTokens: 4))
            Issue.record("expected the KV budget to run out")
        } catch let error as KVError {
            #expect(error.description.contains("KV cache memory exhausted"))
        }
        #expect(tight.kv.pool.usedCount == 0)
        #expect(try tight.generate(request(prompt, n: 1, maxTokens: 4)).completions[0].tokens.count == 4)
    }

    @Test("invalid requests are refused with a message")
    func invalid() throws {
        let engine = try makeEngine("builtin:stories260k")
        #expect(throws: EngineError.self) { try engine.generate(request(Array(repeating: 5, count: 600))) }
        #expect(throws: EngineError.self) { try engine.generate(request(Array(repeating: 5, count: 500), maxTokens: 20)) }
        #expect(throws: EngineError.self) { try engine.generate(request([1, 512])) }
        #expect(throws: EngineError.self) { try engine.generate(request([])) }
        #expect(throws: EngineError.self) { try engine.score(prompt: [1], continuations: [[]]) }
    }
}

@Suite("Prefix discovery")
struct PrefixDiscoveryTests {
    @Test("shared prompts are discovered without being declared: same outputs, less KV")
    func discovery() throws {
        let engine = try makeEngine("synthetic:tiny")
        let shared = (0..<2000).map { 3 + $0 % 500 }
        let r = request(shared, n: 2, maxTokens: 4)
        let suffixes = [[7, 8, 9], [7, 8, 10, 11], [12]]
        let together = try engine.generate(r, suffixes: suffixes)
        var separateKV = 0
        for (i, s) in suffixes.enumerated() {
            let alone = try engine.generate(request(shared + s, n: 2, maxTokens: 4))
            separateKV += alone.kvPeakBytes
            for j in 0..<2 { #expect(together.completions[i * 2 + j].tokens == alone.completions[j].tokens) }
        }
        #expect(together.kvPeakBytes < separateKV / 2)
        #expect(engine.kv.pool.usedCount == 0)
    }
}
