import Foundation
import BanyanEngine
import BanyanModel
import BanyanTokenizer

/// Which OpenAI endpoint a body targets (decides its fields and the response object).
public enum OpenAIEndpoint: String, Sendable {
    case completions = "/v1/completions"
    case chatCompletions = "/v1/chat/completions"
}

/// A checked `/v1/completions` or `/v1/chat/completions` body, as engine requests: one `Request`
/// per prompt (a completions `prompt` list gives several; choice index = prompt index * n + sample).
public struct OpenAIRequest: Sendable {
    public var endpoint: OpenAIEndpoint
    public var requests: [Request]
    /// The body's `model`, when given.
    public var model: String?
    /// completions `logprobs` / chat `top_logprobs` when log-probabilities were asked for, else nil.
    public var logprobs: Int?
    /// completions `echo`: the prompt is part of each choice's text (and logprobs).
    public var echo = false
    /// Each prompt as given when it was text (echo returns it verbatim), nil for token prompts.
    public var promptTexts: [String?] = []
    /// The seed every sample's random stream derives from (the body's, or the caller's default).
    public var seed: UInt64 = 0
    /// `stream`, and `stream_options.include_usage` (a last chunk with usage and no choices).
    public var stream = false
    public var includeUsage = false
    /// Samples per prompt.
    public var n: Int { requests.first?.n ?? 1 }
}

/// Turns OpenAI request bodies into `OpenAIRequest`s: checks every field's type and range, refuses
/// fields Banyan does not implement (unless at their no-op value), encodes prompts (text with the
/// model's tokenizer, chat with its template). Token ids and context length are the engine's
/// `validate`. One parser for `banyan batch` lines and `banyan serve` bodies.
public struct OpenAIRequestParser: Sendable {
    public let engine: Engine
    public let chatTemplate: ChatTemplate?
    /// Put before field names in messages: "body." for batch lines, "" for HTTP bodies.
    public let fieldPrefix: String

    public init(engine: Engine, chatTemplate: ChatTemplate?, fieldPrefix: String = "") {
        self.engine = engine
        self.chatTemplate = chatTemplate
        self.fieldPrefix = fieldPrefix
    }

    static let commonFields: Set<String> = ["model", "max_tokens", "temperature", "top_p", "n", "seed", "stop", "top_k", "min_p",
                                            "stop_token_ids", "ignore_eos", "stream", "stream_options", "user"]
    static let completionFields = commonFields.union(["prompt", "logprobs", "echo"])
    static let chatFields = commonFields.union(["messages", "max_completion_tokens", "logprobs", "top_logprobs"])

    /// OpenAI parameters Banyan does not implement, accepted only at their no-op value (anything
    /// else would change the output, so it is refused rather than ignored). `null` is always no-op.
    static let neutralValues: [String: (description: String, isNeutral: @Sendable (JSONValue) -> Bool)] = [
        "frequency_penalty": ("0", { $0.doubleValue == 0 }),
        "presence_penalty": ("0", { $0.doubleValue == 0 }),
        "repetition_penalty": ("1", { $0.doubleValue == 1 }),
        "logit_bias": ("{}", { $0.objectValue?.isEmpty == true }),
        "response_format": ("{\"type\": \"text\"}", { $0 == .object(["type": .string("text")]) }),
        "tools": ("[]", { $0.arrayValue?.isEmpty == true }),
        "functions": ("[]", { $0.arrayValue?.isEmpty == true }),
        "tool_choice": ("\"none\"", { $0 == .string("none") }),
        "function_call": ("\"none\"", { $0 == .string("none") }),
        // Without tools these change nothing.
        "parallel_tool_calls": ("true or false", { $0.boolValue != nil }),
        "best_of": ("1", { $0.doubleValue == 1 }),
        "suffix": ("\"\"", { $0 == .string("") }),
        "store": ("false", { $0 == .bool(false) }),
        "metadata": ("{}", { $0.objectValue?.isEmpty == true }),
    ]

    /// Parses a body for `endpoint`; `defaultSeed` is used when the body has no `seed`.
    public func parse(_ body: [String: JSONValue], endpoint: OpenAIEndpoint, defaultSeed: UInt64) throws -> OpenAIRequest {
        let allowed = endpoint == .completions ? Self.completionFields : Self.chatFields
        try checkUnknown(body, allowed: allowed.union(Self.neutralValues.keys), where: fieldPrefix)
        for name in Self.neutralValues.keys.sorted() {
            guard let v = body[name], v != .null, let neutral = Self.neutralValues[name], !neutral.isNeutral(v) else { continue }
            let shown = v.objectValue != nil || v.arrayValue != nil ? "" : " \(v.brief)"
            throw OpenAIError.invalid("\(fieldPrefix)\(name)\(shown) unsupported (only \(neutral.description))", param: name)
        }

        var parsed = OpenAIRequest(endpoint: endpoint, requests: [], model: body["model"]?.stringValue)
        if let v = body["stream"], v != .null {
            guard let b = v.boolValue else { throw invalid("stream must be true or false, got \(v.brief)", "stream") }
            parsed.stream = b
        }
        if let v = body["stream_options"], v != .null {
            guard let options = v.objectValue else { throw invalid("stream_options must be an object, got \(v.brief)", "stream_options") }
            guard parsed.stream else { throw invalid("stream_options needs \(fieldPrefix)stream: true", "stream_options") }
            try checkUnknown(options, allowed: ["include_usage", "continuous_usage_stats"], where: fieldPrefix + "stream_options.")
            if let u = options["include_usage"], u != .null {
                guard let b = u.boolValue else { throw invalid("stream_options.include_usage must be true or false, got \(u.brief)", "stream_options") }
                parsed.includeUsage = b
            }
            if let c = options["continuous_usage_stats"], c != .null, c != .bool(false) {
                throw invalid("stream_options.continuous_usage_stats unsupported (only false)", "stream_options")
            }
        }

        var template = Request(prompt: [])
        let n = try int(body, "n") ?? 1
        guard n >= 1 else { throw invalid("n must be at least 1, got \(n)", "n") }
        template.n = n
        let temperature = try number(body, "temperature") ?? 1
        guard temperature >= 0, temperature.isFinite else { throw invalid("temperature must be ≥ 0, got \(temperature)", "temperature") }
        let topP = try number(body, "top_p") ?? 1
        guard topP > 0, topP <= 1 else { throw invalid("top_p must be in (0, 1], got \(topP)", "top_p") }
        let topK = try int(body, "top_k") ?? 0
        guard topK >= 0 || topK == -1 else { throw invalid("top_k must be ≥ 0 (or -1: off), got \(topK)", "top_k") }
        let minP = try number(body, "min_p") ?? 0
        guard minP >= 0, minP <= 1 else { throw invalid("min_p must be in [0, 1], got \(minP)", "min_p") }
        if let v = body["seed"], v != .null {
            guard let d = v.doubleValue, let s = Int64(exactly: d) else { throw invalid("seed must be an integer, got \(v.brief)", "seed") }
            parsed.seed = UInt64(bitPattern: s)
        } else {
            parsed.seed = defaultSeed
        }
        template.sampling = SamplingParameters(temperature: Float(temperature), topK: max(0, topK), topP: Float(topP), minP: Float(minP),
                                               seed: parsed.seed)
        template.stopStrings = try stopStrings(body)
        if let v = body["stop_token_ids"], v != .null {
            guard let list = v.arrayValue else { throw invalid("stop_token_ids must be a list of token ids", "stop_token_ids") }
            template.stopTokenIDs = Set(try list.map { x in
                guard let i = x.intValue else { throw invalid("stop_token_ids: \(x.brief) is not a token id", "stop_token_ids") }
                return i
            })
        }
        if let v = body["ignore_eos"], v != .null {
            guard let b = v.boolValue else { throw invalid("ignore_eos must be true or false, got \(v.brief)", "ignore_eos") }
            template.ignoreEOS = b
        }

        let prompts: [[Int]]
        var maxTokens = try int(body, "max_tokens")
        switch endpoint {
        case .completions:
            if let k = try int(body, "logprobs") {
                guard k >= 0 && k <= 20 else { throw invalid("logprobs must be in 0...20, got \(k)", "logprobs") }
                parsed.logprobs = k
            }
            if let v = body["echo"], v != .null {
                guard let b = v.boolValue else { throw invalid("echo must be true or false, got \(v.brief)", "echo") }
                parsed.echo = b
            }
            (prompts, parsed.promptTexts) = try completionPrompts(body)
            maxTokens = maxTokens ?? 16
        case .chatCompletions:
            if let v = body["logprobs"], v != .null {
                guard let b = v.boolValue else { throw invalid("logprobs must be true or false, got \(v.brief)", "logprobs") }
                if b { parsed.logprobs = 0 }
            }
            if let k = try int(body, "top_logprobs") {
                guard k >= 0 && k <= 20 else { throw invalid("top_logprobs must be in 0...20, got \(k)", "top_logprobs") }
                guard parsed.logprobs != nil else { throw invalid("top_logprobs needs \(fieldPrefix)logprobs: true", "top_logprobs") }
                parsed.logprobs = k
            }
            prompts = [try chatPrompt(body)]
            parsed.promptTexts = [nil]
            if let m = try int(body, "max_completion_tokens") {
                guard maxTokens == nil else { throw invalid("give \(fieldPrefix)max_tokens or \(fieldPrefix)max_completion_tokens, not both", "max_completion_tokens") }
                maxTokens = m
            }
            // OpenAI's chat default: as many tokens as the context leaves (the engine admits on what
            // a request needs now, so this reserves nothing up front).
            maxTokens = maxTokens ?? max(1, engine.config.maxPositionCount - prompts[0].count)
        }
        // max_tokens 0 only scores the prompt, which echo returns (with its logprobs when asked).
        let scoring = parsed.echo && maxTokens == 0
        guard let m = maxTokens, m >= 1 || scoring else {
            throw invalid("max_tokens must be at least 1\(parsed.echo ? " (or 0 with echo)" : ""), got \(maxTokens ?? 0)", "max_tokens")
        }
        template.maxTokens = m
        template.topLogprobs = parsed.logprobs ?? 0
        template.promptLogprobsFrom = parsed.echo && (parsed.logprobs != nil || scoring) ? 1 : nil
        parsed.requests = prompts.enumerated().map { i, p in
            var r = template
            r.prompt = p
            r.rngIndexOffset = i * n
            return r
        }
        return parsed
    }

    func invalid(_ message: String, _ param: String) -> OpenAIError {
        .invalid(fieldPrefix + message, param: param)
    }

    /// Refuses fields outside `allowed`, naming them all.
    public func checkUnknown(_ fields: [String: JSONValue], allowed: Set<String>, where prefix: String) throws {
        let unknown = fields.keys.filter { !allowed.contains($0) }.sorted()
        if !unknown.isEmpty {
            throw OpenAIError.invalidRequest(code: "unknown_field",
                                             message: "unknown field\(unknown.count > 1 ? "s" : "") \(unknown.map { prefix + $0 }.joined(separator: ", "))",
                                             param: unknown.first)
        }
    }

    func int(_ body: [String: JSONValue], _ key: String) throws -> Int? {
        guard let v = body[key], v != .null else { return nil }
        guard let i = v.intValue else { throw invalid("\(key) must be an integer, got \(v.brief)", key) }
        return i
    }

    func number(_ body: [String: JSONValue], _ key: String) throws -> Double? {
        guard let v = body[key], v != .null else { return nil }
        guard let d = v.doubleValue else { throw invalid("\(key) must be a number, got \(v.brief)", key) }
        return d
    }

    func stopStrings(_ body: [String: JSONValue]) throws -> [String] {
        guard let v = body["stop"], v != .null else { return [] }
        let list: [String]
        if let s = v.stringValue { list = [s] }
        else if let a = v.arrayValue, let strings = Optional(a.compactMap(\.stringValue)), strings.count == a.count { list = strings }
        else { throw invalid("stop must be a string or a list of strings, got \(v.brief)", "stop") }
        guard list.allSatisfy({ !$0.isEmpty }) else { throw invalid("stop: empty stop string", "stop") }
        guard engine.tokenizer != nil || list.isEmpty else {
            throw invalid("stop needs a tokenizer and \(engine.model.name) has none (use \(fieldPrefix)stop_token_ids)", "stop")
        }
        return list
    }

    /// `prompt`: a string, a token list, or a non-empty list of either.
    func completionPrompts(_ body: [String: JSONValue]) throws -> ([[Int]], [String?]) {
        guard let v = body["prompt"] else { throw invalid("prompt is missing", "prompt") }
        func tokens(_ list: [JSONValue], _ what: String) throws -> [Int] {
            try list.map { x in
                guard let i = x.intValue else { throw OpenAIError.invalid("\(what): \(x.brief) is not a token id", param: "prompt") }
                return i
            }
        }
        func text(_ s: String) throws -> [Int] {
            do { return try engine.encodePrompt(s) } catch { throw invalid("prompt: \(error)", "prompt") }
        }
        if let s = v.stringValue { return ([try text(s)], [s]) }
        guard let list = v.arrayValue, !list.isEmpty else { throw invalid("prompt must be a string, a token list, or a non-empty list of those", "prompt") }
        if list.allSatisfy({ $0.doubleValue != nil }) { return ([try tokens(list, fieldPrefix + "prompt")], [nil]) }
        let prompts: [[Int]] = try list.enumerated().map { i, p in
            if let s = p.stringValue { return try text(s) }
            if let l = p.arrayValue, !l.isEmpty { return try tokens(l, "\(fieldPrefix)prompt[\(i)]") }
            throw invalid("prompt[\(i)] must be a string or a token list, got \(p.brief)", "prompt")
        }
        return (prompts, list.map(\.stringValue))
    }

    /// `messages`, checked: roles and contents (a string, or a list of text parts, joined by "\n" as
    /// vLLM does).
    public func chatMessages(_ body: [String: JSONValue]) throws -> [ChatMessage] {
        guard let list = body["messages"]?.arrayValue, !list.isEmpty else { throw invalid("messages must be a non-empty list", "messages") }
        return try list.enumerated().map { i, m in
            let at = "messages[\(i)]"
            guard let fields = m.objectValue else { throw invalid("\(at) must be an object", "messages") }
            try checkUnknown(fields, allowed: ["role", "content", "name"], where: "\(fieldPrefix)\(at).")
            guard let role = fields["role"]?.stringValue else { throw invalid("\(at).role must be a string", "messages") }
            guard role != "tool" && role != "function" else { throw invalid("\(at).role \"\(role)\" unsupported (tools are not implemented)", "messages") }
            let content: String
            if let s = fields["content"]?.stringValue {
                content = s
            } else if let parts = fields["content"]?.arrayValue {
                content = try parts.enumerated().map { j, part in
                    guard part["type"]?.stringValue == "text", let text = part["text"]?.stringValue else {
                        throw invalid("\(at).content[\(j)] must be {\"type\": \"text\", \"text\": ...} (only text parts are supported)", "messages")
                    }
                    return text
                }.joined(separator: "\n")
            } else {
                throw invalid("\(at).content must be a string or a list of text parts", "messages")
            }
            return ChatMessage(role: role, content: content, name: fields["name"]?.stringValue)
        }
    }

    /// The rendered chat prompt as token ids (the template holds the special tokens, so none are added).
    public func chatTokens(_ messages: [ChatMessage]) throws -> [Int] {
        guard let tok = engine.tokenizer else {
            throw OpenAIError.invalid("chat completions need a tokenizer and \(engine.model.name) has none (use /v1/completions with token ids)")
        }
        guard let chatTemplate else {
            throw OpenAIError.invalidRequest(code: "unsupported_template", message: "chat completions need a chat template and \(engine.model.name) has none (tokenizer_config.json chat_template)", param: nil)
        }
        return tok.encode(try chatTemplate.render(messages, addGenerationPrompt: true), addSpecialTokens: false)
    }

    func chatPrompt(_ body: [String: JSONValue]) throws -> [Int] {
        try chatTokens(try chatMessages(body))
    }
}
