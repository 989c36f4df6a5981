import Foundation
import BanyanKV
import BanyanKernels

extension Engine {
    /// Log-probabilities of each continuation token given the prompt and the continuation before it.
    /// Each `prompt + continuation` is a scoring request (no generated tokens); the prompt is
    /// computed once and the continuations reuse it from the prefix cache, scored in batched steps
    /// that read the prompt's KV blocks once per step (Hydragen), not once per continuation.
    public func score(prompt: [Int], continuations: [[Int]]) throws -> (scores: [ScoreResult], kvPeakBytes: Int) {
        guard !prompt.isEmpty else { throw EngineError.invalidRequest("the prompt is empty") }
        guard !continuations.isEmpty else { throw EngineError.invalidRequest("no continuation to score") }
        try validate(tokens: prompt, what: "prompt")
        for (i, c) in continuations.enumerated() {
            guard !c.isEmpty else { throw EngineError.invalidRequest("continuation \(i) is empty") }
            try validate(tokens: c, what: "continuation \(i)")
            try validateContext(prompt.count + c.count, what: "prompt + continuation \(i)")
        }
        let requests = continuations.map { c -> Request in
            var r = Request(prompt: prompt + c)
            r.maxTokens = 0
            r.promptLogprobsFrom = prompt.count
            return r
        }
        var results = continuations.map { ScoreResult(tokens: $0, logprobs: []) }
        var firstError: (any Error)? = nil
        let stats = runBatch(requests, policy: .prefixTree) { i, result in
            switch result {
            case .success(let o): results[i].logprobs = o.promptLogprobs ?? []
            case .failure(let e): if firstError == nil { firstError = e }
            }
        }
        if let e = firstError { throw e }
        return (results, stats.kvPeakBytes)
    }

    /// The full next-token log-probability distribution after `prompt` (`[vocab]`, natural log).
    /// A prompt longer than one step's budget runs in several steps of the step driver.
    public func nextTokenLogprobs(prompt: [Int]) throws -> [Float] {
        guard !prompt.isEmpty else { throw EngineError.invalidRequest("the prompt is empty") }
        try validate(tokens: prompt, what: "prompt")
        try validateContext(prompt.count, what: "prompt")
        let seq = kv.createSequence()
        defer { kv.free(seq) }
        var logits: UnsafeMutablePointer<Float>? = nil
        var done = 0
        while done < prompt.count {
            let count = min(options.maxBatchedTokens, prompt.count - done)
            let first = try kv.append(seq, count: count)
            logits = step(tokens: prompt[done..<(done + count)].map { Int32($0) }, sequences: Array(repeating: seq, count: count),
                          positions: Array(first..<(first + count)), logitRows: done + count == prompt.count ? [count - 1] : [])
            done += count
        }
        var out = [Float](repeating: 0, count: config.vocabularySize)
        out.withUnsafeMutableBufferPointer { Elementwise.logSoftmax(logits!, count: config.vocabularySize, out: $0.baseAddress!) }
        return out
    }
}
