import Foundation
import BanyanEngine
import BanyanKV
import BanyanModel
import BanyanTokenizer

typealias JSON = JSONOutput

/// Formats output lines: an OpenAI completion / chat.completion object per successful item, an
/// error record per failed line. Ids derive from `custom_id`, so re-runs give the same records.
struct RecordWriter {
    let modelName: String
    let tokenizer: Tokenizer?
    let created = Int(Date().timeIntervalSince1970)

    func failure(line: Int, customID: String?, code: String, message: String) -> String {
        JSON.object([
            ("id", .string("batch_req_" + hex(fnv1a("line \(line)\u{0}" + (customID ?? ""))))),
            ("custom_id", customID.map { .string($0) } ?? .null),
            ("response", .null),
            ("error", .object([("code", .string(code)), ("message", .string(message)), ("line", .int(line))])),
        ]).rendered
    }

    func success(_ item: BatchItem, _ outputs: [BatchOutput]) -> String {
        let n = item.requests.first?.n ?? 1
        var choices: [JSON] = []
        for (p, output) in outputs.enumerated() {
            for c in output.completions {
                choices.append(item.endpoint == .completions
                               ? completionChoice(item, prompt: p, output: output, c, index: p * n + c.index)
                               : chatChoice(item, c, index: p * n + c.index))
            }
        }
        let promptTokens = outputs.reduce(0) { $0 + $1.promptTokens }
        let completionTokens = outputs.reduce(0) { $0 + $1.completionTokens }
        let isChat = item.endpoint == .chatCompletions
        let body = JSON.object([
            ("id", .string((isChat ? "chatcmpl-" : "cmpl-") + hex(fnv1a(item.customID)))),
            ("object", .string(isChat ? "chat.completion" : "text_completion")),
            ("created", .int(created)),
            ("model", .string(item.model ?? modelName)),
            ("choices", .array(choices)),
            ("usage", .object([("prompt_tokens", .int(promptTokens)), ("completion_tokens", .int(completionTokens)),
                               ("total_tokens", .int(promptTokens + completionTokens))])),
        ])
        return JSON.object([
            ("id", .string("batch_req_" + hex(fnv1a(item.customID)))),
            ("custom_id", .string(item.customID)),
            ("response", .object([("status_code", .int(200)), ("request_id", .string(hex(fnv1a(item.customID)))), ("body", body)])),
            ("error", .null),
        ]).rendered
    }

    func finishReason(_ c: Completion) -> String { c.finishReason == .length ? "length" : "stop" }

    /// Text pieces of `ids` that concatenate to their decoded text ("token_id:N" without a tokenizer).
    func pieces(_ ids: [Int]) -> [String] {
        guard let tokenizer else { return ids.map { "token_id:\($0)" } }
        var decoder = IncrementalDecoder(tokenizer: tokenizer)
        var out = ids.map { (try? decoder.append($0)) ?? "" }
        if !out.isEmpty { out[out.count - 1] += decoder.finish() }
        return out
    }

    func piece(_ id: Int) -> String {
        guard let tokenizer else { return "token_id:\(id)" }
        return (try? tokenizer.decode([id])) ?? ""
    }

    func completionChoice(_ item: BatchItem, prompt p: Int, output: BatchOutput, _ c: Completion, index: Int) -> JSON {
        let promptIDs = item.requests[p].prompt
        var text: String? = c.text
        if item.echo, let t = text {
            let promptText = item.promptTexts[p] ?? (try? tokenizer?.decode(promptIDs)) ?? nil
            text = promptText.map { $0 + t }
        }
        var logprobs = JSON.null
        if let k = item.logprobs {
            var tokens: [String] = [], values: [JSON] = [], tops: [JSON] = []
            if item.echo {
                tokens = pieces(promptIDs)
                values = [.null] + (output.promptLogprobs ?? []).map { .double($0) }
                // Alternatives are reported for generated tokens only; a prompt position lists its own token.
                tops = [.null] + zip(promptIDs.dropFirst(), output.promptLogprobs ?? []).map { id, lp in .object([(piece(id), .double(lp))]) }
            }
            tokens += pieces(c.tokens)
            values += c.logprobs.map { .double($0) }
            for i in c.tokens.indices {
                var seen = Set<String>()
                let alternatives = i < c.topLogprobs.count ? c.topLogprobs[i] : []
                // Two ids can decode to the same text; the more likely one keeps the key.
                let entries: [(String, JSON)] = alternatives.prefix(k).compactMap { t in
                    let key = piece(t.token)
                    return seen.insert(key).inserted ? (key, .double(t.logprob)) : nil
                }
                tops.append(.object(entries))
            }
            var offsets: [JSON] = []
            var offset = 0
            for t in tokens { offsets.append(.int(offset)); offset += t.unicodeScalars.count }
            logprobs = .object([("tokens", .array(tokens.map { .string($0) })), ("token_logprobs", .array(values)),
                                ("top_logprobs", .array(tops)), ("text_offset", .array(offsets))])
        }
        return .object([("index", .int(index)), ("text", text.map { .string($0) } ?? .null), ("logprobs", logprobs),
                        ("finish_reason", .string(finishReason(c))), ("tokens", .array(c.tokens.map { .int($0) }))])
    }

    func chatChoice(_ item: BatchItem, _ c: Completion, index: Int) -> JSON {
        var logprobs = JSON.null
        if let k = item.logprobs {
            let texts = pieces(c.tokens)
            func entry(_ token: String, _ lp: Double) -> [(String, JSON)] {
                [("token", .string(token)), ("logprob", .double(lp)), ("bytes", .array(Array(token.utf8).map { .int(Int($0)) }))]
            }
            let content: [JSON] = c.tokens.indices.map { i in
                let alternatives = i < c.topLogprobs.count ? Array(c.topLogprobs[i].prefix(k)) : []
                return .object(entry(texts[i], c.logprobs[i]) + [("top_logprobs", .array(alternatives.map { .object(entry(piece($0.token), $0.logprob)) }))])
            }
            logprobs = .object([("content", .array(content))])
        }
        return .object([
            ("index", .int(index)),
            ("message", .object([("role", .string("assistant")), ("content", c.text.map { .string($0) } ?? .null)])),
            ("logprobs", logprobs),
            ("finish_reason", .string(finishReason(c))),
            ("tokens", .array(c.tokens.map { .int($0) })),
        ])
    }
}

/// The error record code of a failure reported by the engine.
func errorCode(_ error: any Error) -> String {
    switch error {
    case let e as BatchError: return e.code
    case EngineError.contextExceeded: return "context_length_exceeded"
    case EngineError.invalidRequest: return "invalid_request"
    case is KVError: return "kv_budget_exceeded"
    default: return "server_error"
    }
}

func hex(_ x: UInt64) -> String {
    let s = String(x, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}
