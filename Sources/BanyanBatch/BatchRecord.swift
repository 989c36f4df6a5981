import Foundation
import BanyanEngine
import BanyanKV
import BanyanModel
import BanyanTokenizer
import BanyanOpenAI

typealias JSON = JSONOutput

/// Formats output lines: an OpenAI completion / chat.completion object per successful item (choices
/// from the shared `ChoiceFormatter`), an error record per failed line. Ids derive from `custom_id`, so re-runs give the same records.
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
        let format = ChoiceFormatter(tokenizer: tokenizer)
        let choices = format.choices(item.body, completions: outputs.map { $0.completions.map(SampleOutput.init) }, promptLogprobs: outputs.map(\.promptLogprobs))
        let promptTokens = outputs.reduce(0) { $0 + $1.promptTokens }
        let completionTokens = outputs.reduce(0) { $0 + $1.completionTokens }
        let body = JSON.object(format.head(item.body.endpoint, id: hex(fnv1a(item.customID)), created: created, model: item.body.model ?? modelName) + [
            ("choices", .array(choices)),
            ("usage", format.usage(promptTokens: promptTokens, completionTokens: completionTokens)),
        ])
        return JSON.object([
            ("id", .string("batch_req_" + hex(fnv1a(item.customID)))),
            ("custom_id", .string(item.customID)),
            ("response", .object([("status_code", .int(200)), ("request_id", .string(hex(fnv1a(item.customID)))), ("body", body)])),
            ("error", .null),
        ]).rendered
    }
}

/// The error record code of a failure reported by the engine.
func errorCode(_ error: any Error) -> String {
    switch error {
    case let e as BatchError: return e.code
    case let e as OpenAIError: return e.code
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
