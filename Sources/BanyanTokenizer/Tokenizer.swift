/// A Hugging Face `tokenizer.json` tokenizer (byte-level BPE or SentencePiece-style BPE).
/// STUB: API only until the tokenizer work lands.
public struct Tokenizer: Sendable {
    /// Loads `path`: a `tokenizer.json` file or a folder containing one.
    public static func load(path: String) throws -> Tokenizer { throw TokenizerError.unsupported("stub") }

    /// Number of ids (model vocab plus added tokens).
    public var vocabularySize: Int { 0 }

    /// Encodes text; `addSpecialTokens` applies the post-processor (e.g. BOS), as `tokenizers` does.
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int] { [] }

    /// Decodes ids to text; throws on ids out of range.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) throws -> String { "" }
}

/// Streaming detokenizer: `append` returns only the text made complete by the new id.
public struct IncrementalDecoder: Sendable {
    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {}
    public mutating func append(_ id: Int) throws -> String { "" }
}

/// Errors from loading or using a tokenizer; the text names the file/field and the problem.
public enum TokenizerError: Error, CustomStringConvertible {
    case unsupported(String)
    public var description: String {
        switch self { case .unsupported(let s): return s }
    }
}
