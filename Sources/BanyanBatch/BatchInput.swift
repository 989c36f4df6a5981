import Foundation
import BanyanEngine
import BanyanModel
import BanyanTokenizer
import BanyanOpenAI

/// One valid input line: its envelope and the checked body (one engine `Request` per prompt).
public struct BatchItem: Sendable {
    /// 1-based line number in the input file.
    public var line: Int
    public var customID: String
    public var body: OpenAIRequest
}

/// The non-blank lines of an input file with their 1-based numbers (a trailing CR dropped): the one
/// reading of the file that the job (and with it the shard plan) and `batch merge` share, so both
/// count the same lines.
func nonBlankLines(_ data: Data) -> [(number: Int, text: Substring)] {
    var lines: [(number: Int, text: Substring)] = []
    for (i, raw) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
        var text = Substring(String(decoding: raw, as: UTF8.self))
        if text.hasSuffix("\r") { text = text.dropLast() }
        if !text.allSatisfy(\.isWhitespace) { lines.append((i + 1, text)) }
    }
    return lines
}

/// A line that parsed, or the error record it gets.
public enum BatchLine: Sendable {
    case item(BatchItem)
    case failure(line: Int, customID: String?, BatchError)
}

/// Turns input lines into `BatchItem`s: checks the OpenAI Batch envelope, then the body with the
/// shared `OpenAIRequestParser`. A batch body must not stream, and without a seed its samples draw
/// from a seed derived from `custom_id`, so a re-run gives the same output.
public struct BatchInputParser {
    let body: OpenAIRequestParser

    public init(engine: Engine, chatTemplate: ChatTemplate?) {
        body = OpenAIRequestParser(engine: engine, chatTemplate: chatTemplate, fieldPrefix: "body.")
    }

    static let envelopeFields: Set<String> = ["custom_id", "method", "url", "body"]

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
        } catch let e as OpenAIError {
            return .failure(line: number, customID: customID, .invalidLine(code: e.code, message: e.description))
        } catch {
            return .failure(line: number, customID: customID, .invalid("\(error)"))
        }
    }

    func item(_ fields: [String: JSONValue], customID: String, line: Int) throws -> BatchItem {
        try body.checkUnknown(fields, allowed: Self.envelopeFields, where: "")
        if let m = fields["method"], m != .string("POST") { throw BatchError.invalid("method must be \"POST\", got \(m.brief)") }
        guard let urlValue = fields["url"] else { throw BatchError.invalid("url is missing (/v1/completions or /v1/chat/completions)") }
        guard let url = urlValue.stringValue, let endpoint = OpenAIEndpoint(rawValue: url) else {
            throw BatchError.invalid("url \(urlValue.brief) unsupported (/v1/completions, /v1/chat/completions)")
        }
        guard let fields = fields["body"]?.objectValue else { throw BatchError.invalid("body is missing or not an object") }
        if let v = fields["stream"], v != .null, v != .bool(false) { throw BatchError.invalid("body.stream must be false in a batch, got \(v.brief)") }
        return BatchItem(line: line, customID: customID, body: try body.parse(fields, endpoint: endpoint, defaultSeed: fnv1a(customID)))
    }
}

/// 64-bit FNV-1a (stable across runs and platforms, unlike `Hasher`).
func fnv1a(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}
