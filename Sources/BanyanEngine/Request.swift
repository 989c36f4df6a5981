import Foundation
import BanyanKernels

/// One generation request, the only request type of every client (generate, score, batch, serve):
/// `n` samples of one prompt, or with `maxTokens == 0` a prompt to score.
public struct Request: Sendable {
    public var prompt: [Int]
    public var n = 1
    /// Tokens to generate per sample; 0 scores the prompt only (needs `promptLogprobsFrom`).
    public var maxTokens = 16
    public var sampling = SamplingParameters()
    public var stopTokenIDs: Set<Int> = []
    /// Stop when a sample's decoded text contains one of these (cut from the text; needs a tokenizer).
    public var stopStrings: [String] = []
    public var ignoreEOS = false
    /// Top alternatives reported per generated token (0...20; 0: none).
    public var topLogprobs = 0
    /// Report `log p(prompt[i] | prompt[..<i])` for every `i >= promptLogprobsFrom` (1: the whole
    /// prompt after its first token, as `echo` does); nil: none. Those rows are computed, never
    /// taken from the prefix cache.
    public var promptLogprobsFrom: Int? = nil
    /// Sample k draws from `SequenceRNG(sampling.seed, rngIndexOffset + k)`.
    public var rngIndexOffset = 0
    public init(prompt: [Int]) { self.prompt = prompt }
}

/// Why a completion ended.
public enum FinishReason: String, Sendable, Codable {
    case length, eos, stop
    /// The request was aborted (client gone, cancelled); only in events, never in a finished result.
    case aborted
}

/// What a running request reports, in order: prompt log-probabilities (when asked), then token
/// deltas and each sample's end, then `.finished` once. A failure ends the stream with an error.
public enum RequestEvent: Sendable {
    /// `logprobs[i] = log p(prompt[from + i] | prompt[..<from + i])`.
    case promptLogprobs(from: Int, logprobs: [Double])
    /// New tokens of one sample.
    case delta(SampleDelta)
    /// Sample `index` ended; its text is the concatenation of its deltas' texts.
    case sampleFinished(index: Int, reason: FinishReason)
    /// Every sample ended.
    case finished(RequestUsage)
}

/// New output of one sample since its last delta.
public struct SampleDelta: Sendable {
    /// Sample index within the request (0..<n).
    public var index: Int
    public var tokens: [Int]
    /// Natural-log probability of each token under the model (before temperature and filters).
    public var logprobs: [Double]
    /// Top alternatives per token (empty unless `Request.topLogprobs > 0`).
    public var topLogprobs: [[TokenLogprob]]
    /// Newly final text. Text that may still turn into a stop string is held back until it cannot,
    /// and text after a stop string never appears; empty without a tokenizer.
    public var text: String
}

/// Token counts of a finished request.
public struct RequestUsage: Sendable {
    public var promptTokens: Int
    public var completionTokens: Int
    /// Prompt tokens whose KV came from the prefix cache instead of being computed (all samples).
    public var cachedPromptTokens: Int
}

/// Scheduler and KV state for monitoring (`/metrics`); a snapshot, safe to read from any thread.
public struct EngineMetrics: Sendable {
    /// Requests with at least one sample being prefilled or decoded.
    public var runningRequests = 0
    /// Requests waiting to start (or preempted and waiting to resume).
    public var waitingRequests = 0
    public var kvBlocksUsed = 0
    public var kvBlocksTotal = 0
    /// KV blocks held only by the prefix cache (evictable).
    public var kvBlocksCached = 0
    /// Bytes of one KV block (all layers, K and V).
    public var kvBlockBytes = 0
    /// Totals since the engine started.
    public var promptTokens = 0
    public var cachedPromptTokens = 0
    public var generatedTokens = 0
    public var finishedRequests = 0
    public var abortedRequests = 0
    public var failedRequests = 0
    public var preemptions = 0
    public var steps = 0
    public init() {}
}

/// Identity of a request inside one scheduler.
public struct RequestID: Hashable, Sendable, Comparable {
    public let raw: Int
    public init(_ raw: Int) { self.raw = raw }
    public static func < (a: RequestID, b: RequestID) -> Bool { a.raw < b.raw }
}
