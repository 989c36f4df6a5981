import Foundation
import BanyanEngine
import BanyanModel
import BanyanTokenizer

/// One choice's output: a whole engine `Completion`, or the sum of a sample's streamed deltas.
public struct SampleOutput: Sendable {
    /// Sample index within its request (0..<n).
    public var index: Int
    public var tokens: [Int] = []
    public var logprobs: [Double] = []
    public var topLogprobs: [[TokenLogprob]] = []
    /// Nil without a tokenizer in batch records (JSON null); the server sends "" instead.
    public var text: String?
    public var finishReason: FinishReason = .length

    public init(index: Int, text: String?) { self.index = index; self.text = text }

    public init(_ c: Completion) {
        self.init(index: c.index, text: c.text)
        tokens = c.tokens
        logprobs = c.logprobs
        topLogprobs = c.topLogprobs
        finishReason = c.finishReason
    }

    public mutating func append(_ d: SampleDelta) {
        tokens += d.tokens
        logprobs += d.logprobs
        topLogprobs += d.topLogprobs
        text = (text ?? "") + d.text
    }
}

/// Builds OpenAI response JSON from engine output: choices (`text_completion` and `chat.completion`
/// shapes), their `logprobs` objects and `usage`, for a whole completion (batch records, non-streamed
/// responses) or one streamed delta. Without a tokenizer a token's text is `token_id:N`.
public struct ChoiceFormatter: Sendable {
    public let tokenizer: Tokenizer?

    public init(tokenizer: Tokenizer?) { self.tokenizer = tokenizer }

    /// OpenAI's finish reasons: EOS and stop tokens/strings are all "stop".
    public func finishReason(_ reason: FinishReason) -> String { reason == .length ? "length" : "stop" }

    /// A decoder for token texts that concatenate to the decoded text (nil without a tokenizer).
    public func pieceDecoder() -> IncrementalDecoder? { tokenizer.map { IncrementalDecoder(tokenizer: $0) } }

    /// Text pieces of `ids`, continuing `decoder` (bytes of a character split across tokens go to
    /// the token that completes it); `finish` flushes the decoder into the last piece.
    public func pieces(_ ids: [Int], decoder: inout IncrementalDecoder?, finish: Bool) -> [String] {
        guard var d = decoder else { return ids.map { "token_id:\($0)" } }
        var out = ids.map { (try? d.append($0)) ?? "" }
        if finish && !out.isEmpty { out[out.count - 1] += d.finish() }
        decoder = d
        return out
    }

    /// Text pieces of a whole token list.
    public func pieces(_ ids: [Int]) -> [String] {
        var decoder = pieceDecoder()
        return pieces(ids, decoder: &decoder, finish: true)
    }

    /// One token's own text (for alternatives, which have no neighbours).
    public func piece(_ id: Int) -> String {
        guard let tokenizer else { return "token_id:\(id)" }
        return (try? tokenizer.decode([id])) ?? ""
    }

    /// The `top_logprobs` entry of one completions token: up to `k` alternatives keyed by text.
    public func completionAlternatives(_ alternatives: [TokenLogprob], k: Int) -> JSONOutput {
        var seen = Set<String>()
        // Two ids can decode to the same text; the more likely one keeps the key.
        let entries: [(String, JSONOutput)] = alternatives.prefix(k).compactMap { t in
            let key = piece(t.token)
            return seen.insert(key).inserted ? (key, .double(t.logprob)) : nil
        }
        return .object(entries)
    }

    /// A completions `logprobs` object; `offset` is the text offset (in Unicode scalars) of the
    /// first token, for streamed chunks that continue earlier ones. Returns the offset after the last.
    public func completionLogprobs(tokens: [String], values: [JSONOutput], tops: [JSONOutput], offset: Int = 0) -> (JSONOutput, Int) {
        var offsets: [JSONOutput] = []
        var offset = offset
        for t in tokens { offsets.append(.int(offset)); offset += t.unicodeScalars.count }
        return (.object([("tokens", .array(tokens.map { .string($0) })), ("token_logprobs", .array(values)),
                         ("top_logprobs", .array(tops)), ("text_offset", .array(offsets))]), offset)
    }

    /// The echoed prompt's part of a completions `logprobs` object: the first token has no
    /// log-probability; alternatives are reported for generated tokens only, so a prompt position
    /// lists its own token.
    public func promptLogprobs(prompt: [Int], logprobs: [Double]) -> (tokens: [String], values: [JSONOutput], tops: [JSONOutput]) {
        let values: [JSONOutput] = [.null] + logprobs.map { .double($0) }
        let tops: [JSONOutput] = [.null] + zip(prompt.dropFirst(), logprobs).map { id, lp in .object([(piece(id), .double(lp))]) }
        return (pieces(prompt), values, tops)
    }

    /// A `text_completion` choice for a whole completion of prompt `p`.
    public func completionChoice(_ body: OpenAIRequest, prompt p: Int, promptLogprobs lps: [Double]?, _ c: SampleOutput, index: Int) -> JSONOutput {
        let promptIDs = body.requests[p].prompt
        var text: String? = c.text
        if body.echo, let t = text { text = echoText(body, prompt: p).map { $0 + t } }
        var logprobs = JSONOutput.null
        if let k = body.logprobs {
            var tokens: [String] = [], values: [JSONOutput] = [], tops: [JSONOutput] = []
            if body.echo { (tokens, values, tops) = promptLogprobs(prompt: promptIDs, logprobs: lps ?? []) }
            tokens += pieces(c.tokens)
            values += c.logprobs.map { .double($0) }
            tops += c.tokens.indices.map { i in completionAlternatives(i < c.topLogprobs.count ? c.topLogprobs[i] : [], k: k) }
            logprobs = completionLogprobs(tokens: tokens, values: values, tops: tops).0
        }
        return .object([("index", .int(index)), ("text", text.map { .string($0) } ?? .null), ("logprobs", logprobs),
                        ("finish_reason", .string(finishReason(c.finishReason))), ("tokens", .array(c.tokens.map { .int($0) }))])
    }

    /// The prompt text echo puts before a choice's text: as given, else decoded (nil without a tokenizer).
    public func echoText(_ body: OpenAIRequest, prompt p: Int) -> String? {
        body.promptTexts[p] ?? (try? tokenizer?.decode(body.requests[p].prompt)) ?? nil
    }

    /// The `content` entries of a chat `logprobs` object.
    public func chatLogprobContent(texts: [String], logprobs: [Double], topLogprobs: [[TokenLogprob]], k: Int) -> [JSONOutput] {
        func entry(_ token: String, _ lp: Double) -> [(String, JSONOutput)] {
            [("token", .string(token)), ("logprob", .double(lp)), ("bytes", .array(Array(token.utf8).map { .int(Int($0)) }))]
        }
        return texts.indices.map { i in
            let alternatives = i < topLogprobs.count ? Array(topLogprobs[i].prefix(k)) : []
            return .object(entry(texts[i], logprobs[i]) + [("top_logprobs", .array(alternatives.map { .object(entry(piece($0.token), $0.logprob)) }))])
        }
    }

    /// A `chat.completion` choice for a whole completion.
    public func chatChoice(_ body: OpenAIRequest, _ c: SampleOutput, index: Int) -> JSONOutput {
        var logprobs = JSONOutput.null
        if let k = body.logprobs {
            logprobs = .object([("content", .array(chatLogprobContent(texts: pieces(c.tokens), logprobs: c.logprobs, topLogprobs: c.topLogprobs, k: k)))])
        }
        return .object([
            ("index", .int(index)),
            ("message", .object([("role", .string("assistant")), ("content", c.text.map { .string($0) } ?? .null)])),
            ("logprobs", logprobs),
            ("finish_reason", .string(finishReason(c.finishReason))),
            ("tokens", .array(c.tokens.map { .int($0) })),
        ])
    }

    /// Choices of every prompt's completions, indexed prompt * n + sample.
    public func choices(_ body: OpenAIRequest, completions: [[SampleOutput]], promptLogprobs: [[Double]?]) -> [JSONOutput] {
        var out: [JSONOutput] = []
        for (p, list) in completions.enumerated() {
            for c in list {
                let index = p * body.n + c.index
                out.append(body.endpoint == .completions
                           ? completionChoice(body, prompt: p, promptLogprobs: promptLogprobs[p], c, index: index)
                           : chatChoice(body, c, index: index))
            }
        }
        return out
    }

    /// `usage`; `cachedTokens` adds `prompt_tokens_details.cached_tokens`.
    public func usage(promptTokens: Int, completionTokens: Int, cachedTokens: Int? = nil) -> JSONOutput {
        var fields: [(String, JSONOutput)] = [("prompt_tokens", .int(promptTokens)), ("completion_tokens", .int(completionTokens)),
                                              ("total_tokens", .int(promptTokens + completionTokens))]
        if let cachedTokens { fields.append(("prompt_tokens_details", .object([("cached_tokens", .int(cachedTokens))]))) }
        return .object(fields)
    }

    /// The response object's head: `id`, `object`, `created`, `model`.
    public func head(_ endpoint: OpenAIEndpoint, id: String, created: Int, model: String, chunk: Bool = false) -> [(String, JSONOutput)] {
        let object = endpoint == .chatCompletions ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"
        return [("id", .string((endpoint == .chatCompletions ? "chatcmpl-" : "cmpl-") + id)), ("object", .string(object)),
                ("created", .int(created)), ("model", .string(model))]
    }
}
