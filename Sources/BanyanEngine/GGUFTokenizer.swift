import BanyanModel
import BanyanTokenizer

extension GGUFVocabulary {
    /// The `tokenizer.ggml.*` metadata of `file`; nil when it has no `tokenizer.ggml.model`.
    /// A key of the wrong type is an error naming it.
    public init?(gguf file: GGUFFile) throws {
        let m = file.metadata
        func fail(_ key: String, _ expected: String) -> TokenizerError {
            .invalidField(file: file.path, field: key, expected: expected)
        }
        func list<T>(_ key: String, _ expected: String, _ element: (GGUFValue) -> T?) throws -> [T]? {
            guard let value = m[key] else { return nil }
            guard let array = value.arrayValue else { throw fail(key, expected) }
            var out: [T] = []
            out.reserveCapacity(array.count)
            for v in array {
                guard let e = element(v) else { throw fail(key, expected) }
                out.append(e)
            }
            return out
        }
        func string(_ key: String) throws -> String? {
            guard let v = m[key] else { return nil }
            guard let s = v.stringValue else { throw fail(key, "a string") }
            return s
        }
        func int(_ key: String) throws -> Int? {
            guard let v = m[key] else { return nil }
            guard let i = v.intValue else { throw fail(key, "an integer") }
            return i
        }
        func bool(_ key: String) throws -> Bool? {
            guard let v = m[key] else { return nil }
            guard let b = v.boolValue else { throw fail(key, "true or false") }
            return b
        }
        guard let model = try string("tokenizer.ggml.model") else { return nil }
        guard let tokens = try list("tokenizer.ggml.tokens", "an array of strings", \.stringValue) else {
            throw fail("tokenizer.ggml.tokens", "an array of strings")
        }
        let types = try list("tokenizer.ggml.token_type", "an array of token types (0 to 6)") {
            $0.intValue.flatMap(TokenType.init(rawValue:))
        }
        self.init(file: file.path, model: model, pre: try string("tokenizer.ggml.pre"), tokens: tokens, tokenTypes: types ?? [],
                  merges: try list("tokenizer.ggml.merges", "an array of strings", \.stringValue),
                  scores: try list("tokenizer.ggml.scores", "an array of numbers") { $0.doubleValue.map(Float.init) } ?? [],
                  bosTokenID: try int("tokenizer.ggml.bos_token_id"), unknownTokenID: try int("tokenizer.ggml.unknown_token_id"),
                  addBOS: try bool("tokenizer.ggml.add_bos_token"), addSpacePrefix: try bool("tokenizer.ggml.add_space_prefix"))
    }
}

extension Tokenizer {
    /// The tokenizer in a GGUF file's metadata, or nil when it has none.
    public static func load(gguf file: GGUFFile) throws -> Tokenizer? {
        try GGUFVocabulary(gguf: file).map { try Tokenizer(gguf: $0) }
    }
}

extension Tokenizer {
    /// Loads `path`: the tokenizer in a GGUF file's metadata when it ends in `.gguf`, otherwise a
    /// `tokenizer.json` file or a folder holding one (`load(path:)`).
    public static func load(fileOrGGUF path: String) throws -> Tokenizer {
        guard path.lowercased().hasSuffix(".gguf") else { return try load(path: path) }
        guard let tokenizer = try load(gguf: try GGUFFile(path: path)) else {
            throw TokenizerError.invalidField(file: path, field: "tokenizer.ggml.model", expected: "a tokenizer in the GGUF metadata")
        }
        return tokenizer
    }
}
