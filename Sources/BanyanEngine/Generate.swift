import Foundation
import BanyanKernels
import BanyanKV
import BanyanModel
import BanyanTokenizer

/// A sequence being decoded.
private struct LiveSequence {
    let id: SequenceID
    let completion: Int          // index into completions
    var rng: SequenceRNG
    var next: Int                // sampled, not yet fed
    var decoder: IncrementalDecoder?
    var text = ""
}

extension Engine {
    /// Generates `n` samples of each `prompt + suffix`. The prompt is prefilled once and every suffix
    /// once; samples fork from them and share their KV blocks. Completion `i` is suffix `i / n`,
    /// sample `i % n`, and draws from its own RNG (seed, i), so it is the same whatever the batch.
    public func generate(_ request: GenerateRequest) throws -> GenerateResult {
        let r = request
        let suffixes = r.suffixes.isEmpty ? [[Int]()] : r.suffixes
        guard !r.prompt.isEmpty else { throw EngineError.invalidRequest("the prompt is empty") }
        guard r.n >= 1 else { throw EngineError.invalidRequest("--n must be at least 1, got \(r.n)") }
        guard r.maxTokens >= 1 else { throw EngineError.invalidRequest("--max-tokens must be at least 1, got \(r.maxTokens)") }
        try validate(tokens: r.prompt, what: "prompt")
        for (i, s) in suffixes.enumerated() {
            let what = r.suffixes.isEmpty ? "prompt" : "prompt + suffix \(i)"
            try validate(tokens: s, what: "suffix \(i)")
            try validateContext(r.prompt.count + s.count, what: what)
            try validateContext(r.prompt.count + s.count + r.maxTokens,
                                what: "\(what) (\(r.prompt.count + s.count)) + --max-tokens (\(r.maxTokens))")
        }
        for t in r.stopTokenIDs { try validate(tokens: [t], what: "stop token") }
        if !r.stopStrings.isEmpty && tokenizer == nil {
            throw EngineError.invalidRequest("--stop needs a tokenizer, and this model has none (use stop token ids)")
        }
        let eos: Set<Int> = r.ignoreEOS ? [] : Set(config.eosTokenIDs)
        let vocab = config.vocabularySize

        kv.pool.resetPeak()
        var created: [SequenceID] = []
        defer { for s in created { kv.free(s) } }

        // Prefill: the prefix tree of prompt + suffixes; each shared run once, found automatically.
        let prefillStart = DispatchTime.now()
        let (suffixSeqs, suffixLogits) = try prefillTree(suffixes.map { r.prompt + $0 }, created: &created)
        let prefillSeconds = seconds(since: prefillStart)

        // Completions in suffix-major order; decoded in waves of at most maxBatch sequences.
        var completions: [Completion] = []
        for si in 0..<suffixes.count {
            for j in 0..<r.n {
                completions.append(Completion(index: completions.count, suffixIndex: si, sampleIndex: j, tokens: [],
                                              logprobs: [], text: nil, finishReason: .length))
            }
        }
        let decodeStart = DispatchTime.now()
        var steps = 0
        var nextCompletion = 0
        var live: [LiveSequence] = []
        var first = true
        while nextCompletion < completions.count || !live.isEmpty {
            // Refill free slots: fork new samples from their (pinned) suffix sequence.
            while live.count < options.maxBatch && nextCompletion < completions.count {
                let c = completions[nextCompletion]
                let id = try kv.fork(suffixSeqs[c.suffixIndex]); created.append(id)
                var seq = LiveSequence(id: id, completion: c.index, rng: SequenceRNG(seed: r.sampling.seed, index: c.index),
                                       next: 0, decoder: tokenizer.map { IncrementalDecoder(tokenizer: $0) })
                suffixLogits[c.suffixIndex].withUnsafeBufferPointer { logits in
                    seq.next = Sampler.sample(logits: logits.baseAddress!, count: vocab, parameters: r.sampling, rng: &seq.rng)
                    completions[c.index].logprobs.append(Sampler.logProbability(of: seq.next, logits: logits.baseAddress!, count: vocab))
                }
                live.append(seq)
                nextCompletion += 1
            }
            if first { first = false }
            // Accept each live sequence's pending token; finished ones leave the batch.
            var still: [LiveSequence] = []
            for var seq in live {
                let done = try accept(&seq, into: &completions[seq.completion], eos: eos, request: r)
                if done { kv.free(seq.id); created.removeAll { $0 == seq.id } } else { still.append(seq) }
            }
            live = still
            guard !live.isEmpty else { continue }

            // Decode step: one row per live sequence.
            var positions: [Int] = []
            for seq in live { positions.append(try kv.append(seq.id, count: 1)) }
            let logits = step(tokens: live.map { Int32($0.next) }, sequences: live.map(\.id), positions: positions,
                              logitRows: Array(0..<live.count))
            steps += 1
            for i in live.indices {
                let row = logits + i * vocab
                live[i].next = Sampler.sample(logits: row, count: vocab, parameters: r.sampling, rng: &live[i].rng)
                completions[live[i].completion].logprobs.append(Sampler.logProbability(of: live[i].next, logits: row, count: vocab))
            }
        }
        let decodeSeconds = seconds(since: decodeStart)

        if let tok = tokenizer {
            for i in completions.indices where completions[i].text == nil {
                completions[i].text = try tok.decode(completions[i].tokens)  // one-shot equals the streamed text
            }
        }
        let generated = completions.reduce(0) { $0 + $1.tokens.count }
        return GenerateResult(completions: completions, promptTokens: r.prompt.count + suffixes.reduce(0) { $0 + $1.count },
                              completionTokens: generated, prefillSeconds: prefillSeconds, decodeSeconds: decodeSeconds,
                              decodeSteps: steps, kvPeakBytes: kv.pool.peakBytes)
    }

    /// Appends the sequence's sampled token to its completion unless it ends it; true when finished.
    private func accept(_ seq: inout LiveSequence, into c: inout Completion, eos: Set<Int>, request r: GenerateRequest) throws -> Bool {
        let t = seq.next
        if eos.contains(t) {
            c.logprobs.removeLast()
            c.finishReason = .eos
            return true
        }
        if r.stopTokenIDs.contains(t) {
            c.logprobs.removeLast()
            c.finishReason = .stop
            return true
        }
        c.tokens.append(t)
        if var decoder = seq.decoder, !r.stopStrings.isEmpty {
            seq.text += try decoder.append(t)
            seq.decoder = decoder
            // Stop strings are matched on decoded text, also across token boundaries; the match and
            // anything after it are cut from the text.
            if let cut = r.stopStrings.compactMap({ seq.text.range(of: $0)?.lowerBound }).min() {
                c.text = String(seq.text[..<cut])
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
}

func seconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}
