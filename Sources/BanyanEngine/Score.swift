import Foundation
import BanyanKV
import BanyanKernels

extension Engine {
    /// Log-probabilities of each continuation token given the prompt and the continuation before it.
    /// The prompt is prefilled once; all continuations fork from it and are scored in batched passes
    /// that read the prompt's KV blocks once per pass (Hydragen), not once per continuation.
    public func score(prompt: [Int], continuations: [[Int]]) throws -> (scores: [ScoreResult], kvPeakBytes: Int) {
        guard !prompt.isEmpty else { throw EngineError.invalidRequest("the prompt is empty") }
        guard !continuations.isEmpty else { throw EngineError.invalidRequest("no continuation to score") }
        try validate(tokens: prompt, what: "prompt")
        for (i, c) in continuations.enumerated() {
            guard !c.isEmpty else { throw EngineError.invalidRequest("continuation \(i) is empty") }
            try validate(tokens: c, what: "continuation \(i)")
            try validateContext(prompt.count + c.count, what: "prompt + continuation \(i)")
        }
        let vocab = config.vocabularySize
        kv.pool.resetPeak()
        var created: [SequenceID] = []
        defer { for s in created { kv.free(s) } }
        let root = kv.createSequence(); created.append(root)
        let promptLogits = try prefill([(root, prompt)])[0]
        let firstLogprobs = continuations.map { c in
            promptLogits.withUnsafeBufferPointer { Sampler.logProbability(of: c[0], logits: $0.baseAddress!, count: vocab) }
        }
        var results = continuations.map { ScoreResult(tokens: $0, logprobs: []) }
        for i in results.indices { results[i].logprobs.append(firstLogprobs[i]) }

        // Continuations are fed all but their last token; every row's logits score the next token.
        // Groups are cut so one pass stays within the prefill chunk.
        var group: [Int] = []
        var groupRows = 0
        func flush() throws {
            guard !group.isEmpty else { return }
            var tokens: [Int32] = [], seqs: [SequenceID] = [], positions: [Int] = [], owners: [(Int, Int)] = []
            for ci in group {
                let feed = continuations[ci].dropLast()
                let id = try kv.fork(root); created.append(id)
                let start = try kv.append(id, count: feed.count)
                for (j, t) in feed.enumerated() {
                    tokens.append(Int32(t)); seqs.append(id); positions.append(start + j); owners.append((ci, j + 1))
                }
            }
            let logits = step(tokens: tokens, sequences: seqs, positions: positions, logitRows: Array(0..<tokens.count))
            for (row, (ci, j)) in owners.enumerated() {
                results[ci].logprobs.append(Sampler.logProbability(of: continuations[ci][j], logits: logits + row * vocab, count: vocab))
            }
            for s in created.dropFirst() { kv.free(s) }
            created = [root]
            group = []; groupRows = 0
        }
        for (i, c) in continuations.enumerated() where c.count > 1 {
            if groupRows + c.count - 1 > options.prefillChunk { try flush() }
            group.append(i); groupRows += c.count - 1
        }
        try flush()
        return (results, kv.pool.peakBytes)
    }
}

extension Engine {
    /// The full next-token log-probability distribution after `prompt` (`[vocab]`, natural log).
    public func nextTokenLogprobs(prompt: [Int]) throws -> [Float] {
        guard !prompt.isEmpty else { throw EngineError.invalidRequest("the prompt is empty") }
        try validate(tokens: prompt, what: "prompt")
        try validateContext(prompt.count, what: "prompt")
        let root = kv.createSequence()
        defer { kv.free(root) }
        let logits = try prefill([(root, prompt)])[0]
        var out = [Float](repeating: 0, count: logits.count)
        logits.withUnsafeBufferPointer { l in
            out.withUnsafeMutableBufferPointer { Elementwise.logSoftmax(l.baseAddress!, count: l.count, out: $0.baseAddress!) }
        }
        return out
    }
}
