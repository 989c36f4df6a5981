import Foundation
import BanyanEngine
import BanyanModel
import BanyanOpenAI
import BanyanTokenizer

/// What one completions response has received from the engine, and its JSON: the whole object
/// (non-streamed) or the server-sent-event chunks each event adds. Choice `p * n + k` is prompt
/// `p`'s sample `k`.
struct ResponseState: Sendable {
    let body: OpenAIRequest
    let format: ChoiceFormatter
    let model: String
    let id = String((0..<24).map { _ in "0123456789abcdef".randomElement()! })
    let created = Int(Date().timeIntervalSince1970)
    var clock: LatencyClock
    /// [prompt][sample]
    var outputs: [[SampleOutput]]
    var promptLogprobs: [[Double]?]
    var usage: [RequestUsage?]
    // Streaming, per choice: the decoder of token texts, the next text offset, whether the choice
    // has sent anything yet (its first chunk carries the echoed prompt) and whether it has ended.
    var decoders: [IncrementalDecoder?]
    var textOffsets: [Int]
    var started: [Bool]
    var ended: [Bool]
    var rolesSent = false

    init(body: OpenAIRequest, format: ChoiceFormatter, metrics: ServerMetrics, model: String) {
        self.body = body
        self.format = format
        self.model = model
        clock = LatencyClock(metrics: metrics)
        // Text is "" rather than null without a tokenizer: OpenAI clients expect a string.
        outputs = body.requests.map { r in (0..<r.n).map { SampleOutput(index: $0, text: "") } }
        promptLogprobs = body.requests.map { _ in nil }
        usage = body.requests.map { _ in nil }
        let choiceCount = body.requests.count * body.n
        decoders = (0..<choiceCount).map { _ in format.pieceDecoder() }
        textOffsets = Array(repeating: 0, count: choiceCount)
        started = Array(repeating: false, count: choiceCount)
        ended = started
    }

    mutating func apply(_ e: TaggedEvent) {
        let p = e.prompt
        switch e.event {
        case .promptLogprobs(_, let logprobs):
            promptLogprobs[p] = logprobs
        case .delta(let d):
            outputs[p][d.index].append(d)
            clock.record(choice: p * body.n + d.index, tokenCount: d.tokens.count)
        case .sampleFinished(let index, let reason):
            outputs[p][index].finishReason = reason
        case .finished(let u):
            usage[p] = u
        }
    }

    var usageJSON: JSONOutput {
        let list = usage.compactMap { $0 }
        return format.usage(promptTokens: list.reduce(0) { $0 + $1.promptTokens },
                            completionTokens: list.reduce(0) { $0 + $1.completionTokens },
                            cachedTokens: list.reduce(0) { $0 + $1.cachedPromptTokens })
    }

    /// The seed the samples drew from, so any response can be reproduced (OpenAI has no such field).
    var seedField: (String, JSONOutput) { ("seed", .int(Int(bitPattern: UInt(body.seed)))) }

    /// The non-streamed response object.
    func whole() -> JSONOutput {
        let choices = format.choices(body, completions: outputs, promptLogprobs: promptLogprobs)
        return .object(format.head(body.endpoint, id: id, created: created, model: model)
                       + [("choices", .array(choices)), ("usage", usageJSON), seedField])
    }

    func chunk(_ choices: [JSONOutput], usage: JSONOutput? = nil) -> JSONOutput {
        var fields = format.head(body.endpoint, id: id, created: created, model: model, chunk: true) + [("choices", .array(choices))]
        if let usage { fields.append(("usage", usage)) }
        return .object(fields + [seedField])
    }

    /// The chunks event `e` adds (call after `apply(e)`).
    mutating func chunks(_ e: TaggedEvent) -> [JSONOutput] {
        var out: [JSONOutput] = []
        if body.endpoint == .chatCompletions && !rolesSent {
            rolesSent = true
            for c in 0..<started.count {
                out.append(chunk([.object([("index", .int(c)), ("delta", .object([("role", .string("assistant")), ("content", .string(""))])),
                                           ("logprobs", .null), ("finish_reason", .null)])]))
            }
        }
        let p = e.prompt
        switch e.event {
        case .delta(let d) where !d.tokens.isEmpty || !d.text.isEmpty:
            out.append(chunk([choice(prompt: p, sample: d.index, tokens: d.tokens, logprobs: d.logprobs, topLogprobs: d.topLogprobs,
                                     text: d.text, finish: nil)]))
        case .sampleFinished(let index, let reason):
            out.append(chunk([choice(prompt: p, sample: index, tokens: [], logprobs: [], topLogprobs: [], text: "", finish: reason)]))
        case .finished:
            // Every choice ends with a finish_reason, even one the engine closed without a
            // sampleFinished (a scored prompt generates no sample).
            for k in 0..<body.n where !ended[p * body.n + k] {
                out.append(chunk([choice(prompt: p, sample: k, tokens: [], logprobs: [], topLogprobs: [], text: "",
                                         finish: outputs[p][k].finishReason)]))
            }
        default:
            break
        }
        return out
    }

    /// One streamed choice: new tokens of a sample (with the echoed prompt when it is the choice's
    /// first chunk), or its end.
    mutating func choice(prompt p: Int, sample k: Int, tokens: [Int], logprobs: [Double], topLogprobs: [[TokenLogprob]],
                         text: String, finish: FinishReason?) -> JSONOutput {
        let c = p * body.n + k
        let first = !started[c]
        started[c] = true
        if finish != nil { ended[c] = true }
        let finishReason = finish.map { JSONOutput.string(format.finishReason($0)) } ?? .null
        var pieces = format.pieces(tokens, decoder: &decoders[c], finish: finish != nil)
        if body.endpoint == .chatCompletions {
            var logprobsJSON = JSONOutput.null
            if let n = body.logprobs, !tokens.isEmpty {
                logprobsJSON = .object([("content", .array(format.chatLogprobContent(texts: pieces, logprobs: logprobs, topLogprobs: topLogprobs, k: n)))])
            }
            let delta: JSONOutput = finish == nil ? .object([("content", .string(text))]) : .object([])
            return .object([("index", .int(c)), ("delta", delta), ("logprobs", logprobsJSON), ("finish_reason", finishReason),
                            ("tokens", .ints(tokens))])
        }
        var fullText = text
        var values: [JSONOutput] = logprobs.map { .double($0) }
        var tops: [JSONOutput] = tokens.indices.map { i in
            format.completionAlternatives(i < topLogprobs.count ? topLogprobs[i] : [], k: body.logprobs ?? 0)
        }
        if body.echo && first {
            fullText = (format.echoText(body, prompt: p) ?? "") + text
            if body.logprobs != nil {
                let prompt = format.promptLogprobs(prompt: body.requests[p].prompt, logprobs: promptLogprobs[p] ?? [])
                pieces = prompt.tokens + pieces
                values = prompt.values + values
                tops = prompt.tops + tops
            }
        }
        var logprobsJSON = JSONOutput.null
        if body.logprobs != nil && !pieces.isEmpty {
            (logprobsJSON, textOffsets[c]) = format.completionLogprobs(tokens: pieces, values: values, tops: tops, offset: textOffsets[c])
        }
        return .object([("index", .int(c)), ("text", .string(fullText)), ("logprobs", logprobsJSON), ("finish_reason", finishReason),
                        ("tokens", .ints(tokens))])
    }

    /// The last chunk when `stream_options.include_usage`: no choices, the usage.
    func usageChunk() -> JSONOutput? {
        body.includeUsage ? chunk([], usage: usageJSON) : nil
    }
}
