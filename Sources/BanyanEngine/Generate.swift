import Foundation
import BanyanKernels
import BanyanKV
import BanyanModel
import BanyanTokenizer

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
        let requests: [Request] = suffixes.enumerated().map { i, suffix in
            var b = Request(prompt: r.prompt + suffix)
            b.n = r.n
            b.maxTokens = r.maxTokens
            b.sampling = r.sampling
            b.stopTokenIDs = r.stopTokenIDs
            b.stopStrings = r.stopStrings
            b.ignoreEOS = r.ignoreEOS
            b.rngIndexOffset = i * r.n
            return b
        }
        var outputs = [BatchOutput?](repeating: nil, count: requests.count)
        var firstError: (any Error)? = nil
        // The prompt tree is prefilled before decoding starts so prefill and decode times stay apart.
        let stats = runBatch(requests, policy: .prefixTree, prefillFirst: true) { i, result in
            switch result {
            case .success(let o): outputs[i] = o
            case .failure(let e): if firstError == nil { firstError = e }
            }
        }
        if let e = firstError { throw e }
        var completions: [Completion] = []
        for (i, o) in outputs.enumerated() {
            for var c in o!.completions {
                c.suffixIndex = i
                c.sampleIndex = c.index
                c.index = i * r.n + c.sampleIndex
                completions.append(c)
            }
        }
        return GenerateResult(completions: completions, promptTokens: r.prompt.count + suffixes.reduce(0) { $0 + $1.count },
                              completionTokens: completions.reduce(0) { $0 + $1.tokens.count },
                              prefillSeconds: stats.prefillSeconds, decodeSeconds: stats.decodeSeconds,
                              decodeSteps: stats.decodeSteps, kvPeakBytes: stats.kvPeakBytes)
    }
}

func seconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}
