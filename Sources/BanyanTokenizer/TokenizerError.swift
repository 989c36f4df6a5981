/// Errors from loading or using a tokenizer; the text names the file or field and the problem.
public enum TokenizerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// A file could not be read.
    case unreadable(path: String)
    /// The file is not valid JSON.
    case invalidJSON(file: String, detail: String)
    /// A required field is missing or has the wrong JSON type.
    case invalidField(file: String, field: String, expected: String)
    /// A field holds a value this implementation does not support.
    case unsupportedValue(file: String, field: String, found: String, supported: String)
    /// An id outside `0..<vocabularySize`, or an id with no token.
    case idOutOfRange(id: Int, vocabularySize: Int)
    /// Input bytes that are not valid UTF-8.
    case invalidUTF8(byteOffset: Int)
    /// Free-form message (kept from the stub API).
    case unsupported(String)

    public var description: String {
        switch self {
        case .unreadable(let path):
            return "\(path): cannot read file"
        case .invalidJSON(let file, let detail):
            return "\(file): invalid JSON: \(detail)"
        case .invalidField(let file, let field, let expected):
            return "\(file): \(field) missing or invalid (expected \(expected))"
        case .unsupportedValue(let file, let field, let found, let supported):
            return "\(file): \(field) \(found) unsupported (supported: \(supported))"
        case .idOutOfRange(let id, let size):
            return "token id \(id) out of range (vocabulary size \(size))"
        case .invalidUTF8(let offset):
            return "input is not valid UTF-8 (first bad byte at offset \(offset))"
        case .unsupported(let message):
            return message
        }
    }
}
