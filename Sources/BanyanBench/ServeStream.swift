import Foundation
import Histogram

// The pure half of `bench serve`: what is sent (token-id prompts, the request body) and how a
// streamed answer becomes one request's timings. No I/O here, so the tests drive it with canned
// events and made-up arrival times.

/// The prompts of one `bench serve` run as token ids: one system prompt shared by every request,
/// then a user part of its own per request index. Synthetic models have no tokenizer, so both
/// servers get the same ids; ids are drawn in 3..<vocabularySize (0...2 are usually special).
public struct ServePrompts: Sendable, Equatable {
    public let system: [Int]
    public let userTokenCount: Int
    public let vocabularySize: Int
    public let seed: UInt64

    public init(systemTokenCount: Int, userTokenCount: Int, vocabularySize: Int, seed: UInt64) {
        precondition(vocabularySize > 3 && userTokenCount >= 1, "validated by ServeBenchConfig")
        system = DecodeRunner.tokens(systemTokenCount, vocab: vocabularySize, seed: seed)
        self.userTokenCount = userTokenCount; self.vocabularySize = vocabularySize; self.seed = seed
    }

    /// The user part of request `index`. Its first id is a function of the index alone, so two
    /// requests' user parts differ from their first token (below vocabularySize − 3 requests) and a
    /// prefix cache can share no more than the system prompt.
    public func user(_ index: Int) -> [Int] {
        let span = vocabularySize - 3
        let rest = DecodeRunner.tokens(userTokenCount - 1, vocab: vocabularySize,
                                       seed: seed &+ 0x5DEE_CE66_D &* (UInt64(index) &+ 1))
        return [3 + index % span] + rest
    }

    public func prompt(_ index: Int) -> [Int] { system + user(index) }
}

/// The JSON body of one streamed `POST /v1/completions`: fields both Banyan's server and
/// llama-server accept (Banyan refuses unknown fields).
struct CompletionRequestBody: Encodable {
    struct StreamOptions: Encodable {
        let includeUsage = true
        enum CodingKeys: String, CodingKey { case includeUsage = "include_usage" }
    }
    let model: String?
    let prompt: [Int]
    let maxTokens: Int
    let temperature: Double
    let seed: UInt64
    let ignoreEOS = true
    let stream = true
    let streamOptions = StreamOptions()

    enum CodingKeys: String, CodingKey {
        case model, prompt, temperature, seed, stream
        case maxTokens = "max_tokens", ignoreEOS = "ignore_eos", streamOptions = "stream_options"
    }

    func encoded() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = .sortedKeys
        return try e.encode(self)
    }
}

/// Splits a `text/event-stream` body into its events' data (the WHATWG rules the two servers need:
/// `data:` lines joined by newlines, a blank line ends an event, `:` comments and other fields
/// ignored, CRLF or LF). Bytes arrive in arbitrary pieces; a line split across pieces is kept.
public struct SSEParser: Sendable {
    private var line: [UInt8] = []
    private var data: [String] = []
    private var hasData = false

    public init() {}

    /// Feeds the next bytes; returns the data of every event they completed, in order.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [String] {
        var events: [String] = []
        for b in bytes {
            guard b == UInt8(ascii: "\n") else { line.append(b); continue }
            if line.last == UInt8(ascii: "\r") { line.removeLast() }
            if let e = endLine() { events.append(e) }
        }
        return events
    }

    /// The event left open when the stream ended without a blank line (nil if none).
    public mutating func finish() -> String? {
        if !line.isEmpty { _ = endLine() }  // a last line without its newline
        return endLine()
    }

    private mutating func endLine() -> String? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            guard hasData else { return nil }
            defer { data.removeAll(); hasData = false }
            return data.joined(separator: "\n")
        }
        if line.first == UInt8(ascii: ":") { return nil }
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.endIndex
        guard line[..<colon].elementsEqual("data".utf8) else { return nil }
        var value = colon < line.endIndex ? line.index(after: colon) : colon
        if value < line.endIndex, line[value] == UInt8(ascii: " ") { value += 1 }
        data.append(String(decoding: line[value...], as: UTF8.self))
        hasData = true
        return nil
    }
}

/// One streamed completion chunk, as far as timing needs it. `tokens` is Banyan's per-choice list of
/// the ids in the chunk (a chunk may carry several); llama-server sends one token per chunk and puts
/// its prompt cache count in `timings` as well as `usage`.
struct CompletionChunk: Decodable {
    struct Choice: Decodable {
        var text: String?
        var tokens: [Int]?
    }
    struct Usage: Decodable {
        struct Details: Decodable {
            var cachedTokens: Int?
            enum CodingKeys: String, CodingKey { case cachedTokens = "cached_tokens" }
        }
        var promptTokens: Int
        var completionTokens: Int
        var promptTokensDetails: Details?
        enum CodingKeys: String, CodingKey {
            case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", promptTokensDetails = "prompt_tokens_details"
        }
    }
    /// llama-server's: prompt tokens taken from its cache and prompt tokens it evaluated.
    struct Timings: Decodable {
        var cacheN: Int?
        var promptN: Int?
        enum CodingKeys: String, CodingKey { case cacheN = "cache_n", promptN = "prompt_n" }
    }
    struct Failure: Decodable { var message: String? }

    var choices: [Choice]?
    var usage: Usage?
    var timings: Timings?
    var error: Failure?
}

/// What one streamed request measured. Times are seconds from the request's send.
public struct RequestRecord: Codable, Sendable, Equatable {
    /// The request's index in the run (which user part it sent).
    public var index: Int
    /// Seconds from the level's start to the send.
    public var sentAt: Double
    /// First chunk carrying output.
    public var timeToFirstToken: Double?
    /// Seconds per token between consecutive output chunks (a chunk of k tokens gives k samples of gap / k).
    public var interTokenSeconds: [Double] = []
    /// Last byte of the response.
    public var duration: Double?
    /// From the final usage when the server sent one, else the tokens counted in chunks.
    public var outputTokens = 0
    public var promptTokens: Int?
    /// Prompt tokens the server reused from its cache: usage's `cached_tokens`, else llama-server's `timings.cache_n`.
    public var cachedPromptTokens: Int?
    public var error: String?

    public init(index: Int, sentAt: Double) { self.index = index; self.sentAt = sentAt }

    public var succeeded: Bool { error == nil && duration != nil }
}

/// Builds a `RequestRecord` from a response's SSE events as they arrive.
struct StreamRecorder {
    var record: RequestRecord
    private var parser = SSEParser()
    private var lastOutput: Double?
    private var countedTokens = 0
    private var usageTokens: Int?
    private(set) var done = false

    init(index: Int, sentAt: Double) { record = RequestRecord(index: index, sentAt: sentAt) }

    /// Bytes received `seconds` after the send.
    mutating func receive(_ bytes: some Sequence<UInt8>, at seconds: Double) {
        for event in parser.feed(bytes) { handle(event, at: seconds) }
    }

    /// The response ended at `seconds` after the send; returns the record.
    mutating func finish(at seconds: Double) -> RequestRecord {
        if let event = parser.finish() { handle(event, at: seconds) }
        record.outputTokens = usageTokens ?? countedTokens
        if record.error == nil {
            if !done { record.error = "stream ended without data: [DONE]" }
            else if record.timeToFirstToken == nil { record.error = "no output token in the stream" }
        }
        record.duration = seconds
        return record
    }

    private mutating func handle(_ event: String, at t: Double) {
        guard !done, record.error == nil else { return }
        if event == "[DONE]" { done = true; return }
        let chunk: CompletionChunk
        do { chunk = try JSONDecoder().decode(CompletionChunk.self, from: Data(event.utf8)) } catch {
            record.error = "undecodable chunk: \(event.prefix(200))"
            return
        }
        if let e = chunk.error { record.error = "server error: \(e.message ?? event)"; return }
        if let u = chunk.usage {
            usageTokens = u.completionTokens
            record.promptTokens = u.promptTokens
            if let c = u.promptTokensDetails?.cachedTokens { record.cachedPromptTokens = c }
        }
        if record.cachedPromptTokens == nil, let c = chunk.timings?.cacheN { record.cachedPromptTokens = c }
        let tokens = (chunk.choices ?? []).reduce(0) { n, c in
            n + (c.tokens?.count ?? ((c.text?.isEmpty ?? true) ? 0 : 1))
        }
        guard tokens > 0 else { return }
        countedTokens += tokens
        if let last = lastOutput {
            record.interTokenSeconds += Array(repeating: (t - last) / Double(tokens), count: tokens)
        } else {
            record.timeToFirstToken = t
        }
        lastOutput = t
    }
}

/// Percentiles of a latency sample, from an HdrHistogram at microsecond resolution (3 significant digits).
public struct LatencySummary: Codable, Sendable, Equatable {
    public var count: Int
    public var p50: Double
    public var p99: Double
    public var mean: Double
    public var max: Double

    /// Nil for an empty sample. Values in seconds, at most an hour.
    public init?(seconds values: [Double]) {
        guard !values.isEmpty else { return nil }
        var h = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
        for v in values { _ = h.record(UInt64(Swift.max(0, (v * 1e6).rounded()))) }
        count = values.count
        p50 = Double(h.valueAtPercentile(50)) / 1e6
        p99 = Double(h.valueAtPercentile(99)) / 1e6
        mean = h.mean / 1e6
        max = Double(h.max) / 1e6
    }
}
