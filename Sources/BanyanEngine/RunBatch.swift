import Foundation

/// The result of one request for synchronous clients: its samples in order, plus prompt
/// log-probabilities when asked.
public struct BatchOutput: Sendable {
    public var completions: [Completion]
    /// `log p(prompt[i] | prompt[..<i])` for `i >= promptLogprobsFrom`.
    public var promptLogprobs: [Double]?
    public var promptTokens: Int
    public var cachedPromptTokens = 0
    public var completionTokens: Int { completions.reduce(0) { $0 + $1.tokens.count } }
}

extension Engine {
    /// Runs `requests` to completion on a fresh `Scheduler` (its prefix cache lives for this call)
    /// and calls `onFinish` as each one completes or fails, on this thread. Outputs equal running
    /// each request alone, whatever the policy and batch.
    @discardableResult
    public func runBatch(_ requests: [Request], policy: SchedulingPolicy = .prefixTree,
                         onFinish: (Int, Result<BatchOutput, any Error>) -> Void) -> BatchStats {
        withoutActuallyEscaping(onFinish) { onFinish in
            let scheduler = Scheduler(engine: self, policy: policy)
            let hasText = tokenizer != nil
            for (i, r) in requests.enumerated() {
                var output = BatchOutput(completions: (0..<r.n).map {
                    Completion(index: $0, suffixIndex: 0, sampleIndex: $0, tokens: [], logprobs: [], text: hasText ? "" : nil,
                               finishReason: .length)
                }, promptLogprobs: nil, promptTokens: r.prompt.count)
                scheduler.add(r, id: RequestID(i)) { result in
                    switch result {
                    case .failure(let e): onFinish(i, .failure(e))
                    case .success(.promptLogprobs(_, let logprobs)): output.promptLogprobs = logprobs
                    case .success(.delta(let d)):
                        output.completions[d.index].tokens += d.tokens
                        output.completions[d.index].logprobs += d.logprobs
                        output.completions[d.index].topLogprobs += d.topLogprobs
                        if hasText { output.completions[d.index].text! += d.text }
                    case .success(.sampleFinished(let k, let reason)): output.completions[k].finishReason = reason
                    case .success(.finished(let usage)):
                        output.cachedPromptTokens = usage.cachedPromptTokens
                        onFinish(i, .success(output))
                    }
                }
            }
            while scheduler.hasWork { scheduler.step() }
            scheduler.close()
            return scheduler.stats
        }
    }
}
