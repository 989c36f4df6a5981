import Foundation
import BanyanEngine
import BanyanModel
import BanyanTokenizer

/// Which OpenAI endpoint a line targets (decides the body's fields and the response object).
public enum BatchEndpoint: String, Sendable {
    case completions = "/v1/completions"
    case chatCompletions = "/v1/chat/completions"
}

/// One valid input line, turned into engine requests: one `Request` per prompt (a completions
/// `prompt` list gives several; choice index = prompt index * n + sample index).
public struct BatchItem: Sendable {
    /// 1-based line number in the input file.
    public var line: Int
    public var customID: String
    public var endpoint: BatchEndpoint
    public var requests: [Request]
    /// The body's `model`, echoed back when given.
    public var model: String?
    /// completions `logprobs` / chat `top_logprobs` when log-probabilities were asked for, else nil.
    public var logprobs: Int?
    /// completions `echo`: the prompt is part of each choice's text (and logprobs).
    public var echo = false
    /// Each prompt as given when it was text (echo returns it verbatim), nil for token prompts.
    public var promptTexts: [String?] = []
}

/// A line that parsed, or the error record it gets.
public enum BatchLine: Sendable {
    case item(BatchItem)
    case failure(line: Int, customID: String?, BatchError)
}

/// Turns input lines into `BatchItem`s: checks the OpenAI Batch envelope, the body's fields and
/// their ranges, and encodes prompts (text with the model's tokenizer, chat with its template).
/// Token ids and context length are checked by the engine when the batch runs.
public struct BatchInputParser {
    let engine: Engine
    let chatTemplate: ChatTemplate?

    public init(engine: Engine, chatTemplate: ChatTemplate?) {
        self.engine = engine
        self.chatTemplate = chatTemplate
    }

    static let envelopeFields: Set<String> = ["custom_id", "method", "url", "body"]
    /// Accepted only at their neutral value (they would change the math otherwise).
    static let neutralFields: [String: Double] = ["frequency_penalty": 0, "presence_penalty": 0]
    static let commonFields: Set<String> = ["model", "max_tokens", "temperature", "top_p", "n", "seed", "stop", "top_k", "min_p",
                                            "stop_token_ids", "ignore_eos", "stream", "user", "frequency_penalty", "presence_penalty"]
    static let completionFields = commonFields.union(["prompt", "logprobs", "echo"])
    static let chatFields = commonFields.union(["messages", "max_completion_tokens", "logprobs", "top_logprobs"])

    /// Parses line `number` (1-based) of the input.
    public func parse(_ text: Substring, line number: Int) -> BatchLine {
        guard let root = JSONValue.parse(Data(text.utf8)) else {
            return .failure(line: number, customID: nil, .invalidLine(code: "invalid_json", message: "not valid JSON"))
        }
        guard let fields = root.objectValue else {
            return .failure(line: number, customID: nil, .invalidLine(code: "invalid_json", message: "expected a JSON object, got \(root.brief)"))
        }
        var customID: String? = nil
        if let v = fields["custom_id"], v != .null {
            guard let s = v.stringValue, !s.isEmpty else {
                return .failure(line: number, customID: nil, .invalid("custom_id must be a non-empty string, got \(v.brief)"))
            }
            customID = s
        }
        do {
            guard let id = customID else { throw BatchError.invalidLine(code: "missing_custom_id", message: "custom_id is missing") }
            return .item(try item(fields, customID: id, line: number))
        } catch let e as BatchError {
            return .failure(line: number, customID: customID, e)
        } catch {
            return .failure(line: number, customID: customID, .invalid("\(error)"))
        }
    }

    func item(_ fields: [String: JSONValue], customID: String, line: Int) throws -> BatchItem {
        try checkUnknown(fields, allowed: Self.envelopeFields, where: "")
        if let m = fields["method"], m != .string("POST") { throw BatchError.invalid("method must be \"POST\", got \(m.brief)") }
        guard let urlValue = fields["url"] else { throw BatchError.invalid("url is missing (/v1/completions or /v1/chat/completions)") }
        guard let url = urlValue.stringValue, let endpoint = BatchEndpoint(rawValue: url) else {
            throw BatchError.invalid("url \(urlValue.brief) unsupported (/v1/completions, /v1/chat/completions)")
        }
        guard let body = fields["body"]?.objectValue else { throw BatchError.invalid("body is missing or not an object") }
        try checkUnknown(body, allowed: endpoint == .completions ? Self.completionFields : Self.chatFields, where: "body.")
        for (name, neutral) in Self.neutralFields {
            if let v = body[name], v != .null, v.doubleValue != neutral {
                throw BatchError.invalid("body.\(name) \(v.brief) unsupported (only \(Int(neutral)))")
            }
        }
        if let v = body["stream"], v != .null, v != .bool(false) { throw BatchError.invalid("body.stream must be false in a batch, got \(v.brief)") }

        var template = Request(prompt: [])
        let n = try int(body, "n") ?? 1
        guard n >= 1 else { throw BatchError.invalid("body.n must be at least 1, got \(n)") }
        template.n = n
        let temperature = try number(body, "temperature") ?? 1
        guard temperature >= 0, temperature.isFinite else { throw BatchError.invalid("body.temperature must be ≥ 0, got \(temperature)") }
        let topP = try number(body, "top_p") ?? 1
        guard topP > 0, topP <= 1 else { throw BatchError.invalid("body.top_p must be in (0, 1], got \(topP)") }
        let topK = try int(body, "top_k") ?? 0
        guard topK >= 0 || topK == -1 else { throw BatchError.invalid("body.top_k must be ≥ 0 (or -1: off), got \(topK)") }
        let minP = try number(body, "min_p") ?? 0
        guard minP >= 0, minP <= 1 else { throw BatchError.invalid("body.min_p must be in [0, 1], got \(minP)") }
        // Without a seed the stream is still reproducible (a re-run gives the same output): it derives from custom_id.
        let seed: UInt64
        if let v = body["seed"], v != .null {
            guard let d = v.doubleValue, let s = Int64(exactly: d) else { throw BatchError.invalid("body.seed must be an integer, got \(v.brief)") }
            seed = UInt64(bitPattern: s)
        } else {
            seed = fnv1a(customID)
        }
        template.sampling = SamplingParameters(temperature: Float(temperature), topK: max(0, topK), topP: Float(topP), minP: Float(minP), seed: seed)
        template.stopStrings = try stopStrings(body)
        if let v = body["stop_token_ids"], v != .null {
            guard let list = v.arrayValue else { throw BatchError.invalid("body.stop_token_ids must be a list of token ids") }
            template.stopTokenIDs = Set(try list.map { x in
                guard let i = x.intValue else { throw BatchError.invalid("body.stop_token_ids: \(x.brief) is not a token id") }
                return i
            })
        }
        if let v = body["ignore_eos"], v != .null {
            guard let b = v.boolValue else { throw BatchError.invalid("body.ignore_eos must be true or false, got \(v.brief)") }
            template.ignoreEOS = b
        }

        var item = BatchItem(line: line, customID: customID, endpoint: endpoint, requests: [], model: body["model"]?.stringValue)
        let prompts: [[Int]]
        var maxTokens = try int(body, "max_tokens")
        switch endpoint {
        case .completions:
            if let k = try int(body, "logprobs") {
                guard k >= 0 && k <= 20 else { throw BatchError.invalid("body.logprobs must be in 0...20, got \(k)") }
                item.logprobs = k
            }
            if let v = body["echo"], v != .null {
                guard let b = v.boolValue else { throw BatchError.invalid("body.echo must be true or false, got \(v.brief)") }
                item.echo = b
            }
            (prompts, item.promptTexts) = try completionPrompts(body)
            maxTokens = maxTokens ?? 16
        case .chatCompletions:
            if let v = body["logprobs"], v != .null {
                guard let b = v.boolValue else { throw BatchError.invalid("body.logprobs must be true or false, got \(v.brief)") }
                if b { item.logprobs = 0 }
            }
            if let k = try int(body, "top_logprobs") {
                guard k >= 0 && k <= 20 else { throw BatchError.invalid("body.top_logprobs must be in 0...20, got \(k)") }
                guard item.logprobs != nil else { throw BatchError.invalid("body.top_logprobs needs body.logprobs: true") }
                item.logprobs = k
            }
            prompts = [try chatPrompt(body)]
            item.promptTexts = [nil]
            if let m = try int(body, "max_completion_tokens") {
                guard maxTokens == nil else { throw BatchError.invalid("give body.max_tokens or body.max_completion_tokens, not both") }
                maxTokens = m
            }
            // OpenAI's chat default: as many tokens as the context leaves.
            maxTokens = maxTokens ?? max(1, engine.config.maxPositionCount - prompts[0].count)
        }
        guard let m = maxTokens, m >= 1 else { throw BatchError.invalid("body.max_tokens must be at least 1, got \(maxTokens ?? 0)") }
        template.maxTokens = m
        template.topLogprobs = item.logprobs ?? 0
        template.promptLogprobsFrom = item.echo && item.logprobs != nil ? 1 : nil
        item.requests = prompts.enumerated().map { i, p in
            var r = template
            r.prompt = p
            r.rngIndexOffset = i * n
            return r
        }
        return item
    }

    func checkUnknown(_ fields: [String: JSONValue], allowed: Set<String>, where prefix: String) throws {
        let unknown = fields.keys.filter { !allowed.contains($0) }.sorted()
        if !unknown.isEmpty {
            throw BatchError.invalidLine(code: "unknown_field",
                                         message: "unknown field\(unknown.count > 1 ? "s" : "") \(unknown.map { prefix + $0 }.joined(separator: ", "))")
        }
    }

    func int(_ body: [String: JSONValue], _ key: String) throws -> Int? {
        guard let v = body[key], v != .null else { return nil }
        guard let i = v.intValue else { throw BatchError.invalid("body.\(key) must be an integer, got \(v.brief)") }
        return i
    }

    func number(_ body: [String: JSONValue], _ key: String) throws -> Double? {
        guard let v = body[key], v != .null else { return nil }
        guard let d = v.doubleValue else { throw BatchError.invalid("body.\(key) must be a number, got \(v.brief)") }
        return d
    }

    func stopStrings(_ body: [String: JSONValue]) throws -> [String] {
        guard let v = body["stop"], v != .null else { return [] }
        let list: [String]
        if let s = v.stringValue { list = [s] }
        else if let a = v.arrayValue, let strings = Optional(a.compactMap(\.stringValue)), strings.count == a.count { list = strings }
        else { throw BatchError.invalid("body.stop must be a string or a list of strings, got \(v.brief)") }
        guard list.allSatisfy({ !$0.isEmpty }) else { throw BatchError.invalid("body.stop: empty stop string") }
        guard engine.tokenizer != nil || list.isEmpty else {
            throw BatchError.invalid("body.stop needs a tokenizer and \(engine.model.name) has none (use body.stop_token_ids)")
        }
        return list
    }

    /// `prompt`: a string, a token list, or a non-empty list of either.
    func completionPrompts(_ body: [String: JSONValue]) throws -> ([[Int]], [String?]) {
        guard let v = body["prompt"] else { throw BatchError.invalid("body.prompt is missing") }
        func tokens(_ list: [JSONValue], _ what: String) throws -> [Int] {
            try list.map { x in
                guard let i = x.intValue else { throw BatchError.invalid("\(what): \(x.brief) is not a token id") }
                return i
            }
        }
        func text(_ s: String) throws -> [Int] {
            do { return try engine.encodePrompt(s) } catch { throw BatchError.invalid("body.prompt: \(error)") }
        }
        if let s = v.stringValue { return ([try text(s)], [s]) }
        guard let list = v.arrayValue, !list.isEmpty else { throw BatchError.invalid("body.prompt must be a string, a token list, or a non-empty list of those") }
        if list.allSatisfy({ $0.doubleValue != nil }) { return ([try tokens(list, "body.prompt")], [nil]) }
        let prompts: [[Int]] = try list.enumerated().map { i, p in
            if let s = p.stringValue { return try text(s) }
            if let l = p.arrayValue, !l.isEmpty { return try tokens(l, "body.prompt[\(i)]") }
            throw BatchError.invalid("body.prompt[\(i)] must be a string or a token list, got \(p.brief)")
        }
        return (prompts, list.map(\.stringValue))
    }

    /// `messages` rendered with the chat template, encoded without adding special tokens (the template has them).
    func chatPrompt(_ body: [String: JSONValue]) throws -> [Int] {
        guard let list = body["messages"]?.arrayValue, !list.isEmpty else { throw BatchError.invalid("body.messages must be a non-empty list") }
        let messages: [ChatMessage] = try list.enumerated().map { i, m in
            guard let fields = m.objectValue else { throw BatchError.invalid("body.messages[\(i)] must be an object") }
            try checkUnknown(fields, allowed: ["role", "content", "name"], where: "body.messages[\(i)].")
            guard let role = fields["role"]?.stringValue else { throw BatchError.invalid("body.messages[\(i)].role must be a string") }
            guard let content = fields["content"]?.stringValue else {
                throw BatchError.invalid("body.messages[\(i)].content must be a string (content parts are not supported)")
            }
            return ChatMessage(role: role, content: content, name: fields["name"]?.stringValue)
        }
        guard let tok = engine.tokenizer else {
            throw BatchError.invalid("chat completions need a tokenizer and \(engine.model.name) has none (use /v1/completions with token ids)")
        }
        guard let chatTemplate else {
            throw BatchError.invalidLine(code: "unsupported_template", message: "chat completions need a chat template and \(engine.model.name) has none (tokenizer_config.json chat_template)")
        }
        return tok.encode(try chatTemplate.render(messages, addGenerationPrompt: true), addSpecialTokens: false)
    }
}

/// 64-bit FNV-1a (stable across runs and platforms, unlike `Hasher`).
func fnv1a(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
