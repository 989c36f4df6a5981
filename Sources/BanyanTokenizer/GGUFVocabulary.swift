/// The tokenizer a GGUF file describes in its `tokenizer.ggml.*` metadata (llama.cpp's keys), as
/// plain values. The model loader reads them from the file; `Tokenizer(gguf:)` turns them into the
/// `tokenizer.json` document Hugging Face publishes for such a model and builds that, so GGUF and
/// `tokenizer.json` tokenizers share one BPE.
public struct GGUFVocabulary: Sendable {
    /// How a token is used (`tokenizer.ggml.token_type`, llama.cpp's `llama_token_type`).
    public enum TokenType: Int, Sendable {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// Labels errors (the GGUF file's path).
    public var file: String
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece BPE).
    public var model: String
    /// `tokenizer.ggml.pre`: the pre-tokenizer's name (`smollm`, `llama-bpe`, `qwen2`, `gpt-2`, ...).
    public var pre: String?
    public var tokens: [String]
    /// One per token, or empty when the file has none.
    public var tokenTypes: [TokenType]
    /// `"left right"` pairs, best first; nil when the file has none (SentencePiece files may not).
    public var merges: [String]?
    /// SentencePiece scores, one per token (merges are derived from them when the file has none).
    public var scores: [Float]
    public var bosTokenID: Int?
    public var unknownTokenID: Int?
    /// `tokenizer.ggml.add_bos_token`; nil when absent (SentencePiece vocabularies then add BOS, as llama.cpp does).
    public var addBOS: Bool?
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece: prepend "▁" to the text; default true).
    public var addSpacePrefix: Bool?

    public init(file: String, model: String, pre: String?, tokens: [String], tokenTypes: [TokenType], merges: [String]?,
                scores: [Float], bosTokenID: Int?, unknownTokenID: Int?, addBOS: Bool?, addSpacePrefix: Bool?) {
        self.file = file; self.model = model; self.pre = pre; self.tokens = tokens; self.tokenTypes = tokenTypes
        self.merges = merges; self.scores = scores; self.bosTokenID = bosTokenID; self.unknownTokenID = unknownTokenID
        self.addBOS = addBOS; self.addSpacePrefix = addSpacePrefix
    }

    /// `tokenizer.ggml.pre` values and the split that Hugging Face's tokenizer for them does
    /// (llama.cpp's `llama_vocab::impl::load` names, transformers' GGUF tokenizer mapping).
    static let byteLevelPreTokenizers: [String: (split: String?, digits: Bool)] = [
        "default": (nil, false), "gpt-2": (nil, false), "gpt2": (nil, false),
        "llama-bpe": (SplitRegex.llama3Pattern, false), "llama3": (SplitRegex.llama3Pattern, false),
        "llama-v3": (SplitRegex.llama3Pattern, false),
        "qwen2": (SplitRegex.qwen2Pattern, false),
        // SmolLM's tokenizer.json: each digit alone, then GPT-2's byte-level split (llama.cpp: `\p{N}`, then GPT-2).
        "smollm": (nil, true),
    ]
}

extension Tokenizer {
    /// Builds the tokenizer `vocabulary` describes. Control tokens (`<|im_start|>`) become special
    /// added tokens and user-defined ones plain added tokens, matched whole in the text, as llama.cpp
    /// and transformers' GGUF loader treat them; BOS is added when `add_bos_token` says so.
    public init(gguf v: GGUFVocabulary) throws {
        let config = ConfigReader(file: v.file)
        guard !v.tokens.isEmpty else { throw config.invalid("tokenizer.ggml.tokens", "a non-empty array of strings") }
        guard v.tokenTypes.isEmpty || v.tokenTypes.count == v.tokens.count else {
            throw config.invalid("tokenizer.ggml.token_type", "one type per token (\(v.tokens.count), found \(v.tokenTypes.count))")
        }
        func checkID(_ id: Int?, _ key: String) throws {
            if let id, !v.tokens.indices.contains(id) {
                throw config.invalid("tokenizer.ggml.\(key)", "a token id below \(v.tokens.count) (found \(id))")
            }
        }
        try checkID(v.bosTokenID, "bos_token_id")
        try checkID(v.unknownTokenID, "unknown_token_id")
        func string(_ s: String) -> JSONValue { .string(s) }
        func number(_ i: Int) -> JSONValue { .number(Double(i)) }
        func object(_ members: [(String, JSONValue)]) -> JSONValue { .object(members.map { (key: $0.0, value: $0.1) }) }

        var root: [(String, JSONValue)] = []
        var tokens = v.tokens
        let addBOS: Bool
        switch v.model {
        case "gpt2":
            let pre = v.pre ?? "default"
            guard let (split, digits) = GGUFVocabulary.byteLevelPreTokenizers[pre] else {
                throw config.unsupported("tokenizer.ggml.pre", "\"\(pre)\"",
                                         GGUFVocabulary.byteLevelPreTokenizers.keys.sorted().joined(separator: ", "))
            }
            // Tokens are written in GPT-2's byte alphabet; one that is not (a raw space) is respelled
            // in it, as transformers does, so the merges that use it are found.
            let alphabet = Set(PreTokenizer.byteToScalar)
            tokens = v.tokens.map { t in
                t.unicodeScalars.allSatisfy { alphabet.contains($0.value) } ? t
                    : String(String.UnicodeScalarView(t.utf8.map { Unicode.Scalar(PreTokenizer.byteToScalar[Int($0)])! }))
            }
            var steps: [JSONValue] = []
            if digits { steps.append(object([("type", string("Digits")), ("individual_digits", .bool(true))])) }
            if let split {
                steps.append(object([("type", string("Split")), ("pattern", object([("Regex", string(split))])),
                                     ("behavior", string("Isolated")), ("invert", .bool(false))]))
            }
            steps.append(object([("type", string("ByteLevel")), ("add_prefix_space", .bool(false)),
                                 ("use_regex", .bool(split == nil))]))
            root.append(("pre_tokenizer", object([("type", string("Sequence")), ("pretokenizers", .array(steps))])))
            root.append(("decoder", object([("type", string("ByteLevel"))])))
            guard let merges = v.merges else { throw config.invalid("tokenizer.ggml.merges", "an array of strings (gpt2 vocabularies have merges)") }
            root.append(("model", object([("type", string("BPE")), ("vocab", vocabulary(tokens)),
                                          ("merges", .array(merges.map(string)))])))
            addBOS = v.addBOS ?? false
        case "llama":
            // Llama 2's tokenizer.json: "▁" for spaces (and before the text), byte fallback, the
            // decoder undoing both and dropping the leading space.
            var normalizers: [JSONValue] = []
            if v.addSpacePrefix ?? true { normalizers.append(object([("type", string("Prepend")), ("prepend", string("▁"))])) }
            normalizers.append(object([("type", string("Replace")), ("pattern", object([("String", string(" "))])),
                                       ("content", string("▁"))]))
            root.append(("normalizer", object([("type", string("Sequence")), ("normalizers", .array(normalizers))])))
            var decoders: [JSONValue] = [
                object([("type", string("Replace")), ("pattern", object([("String", string("▁"))])), ("content", string(" "))]),
                object([("type", string("ByteFallback"))]), object([("type", string("Fuse"))]),
            ]
            if v.addSpacePrefix ?? true {
                decoders.append(object([("type", string("Strip")), ("content", string(" ")), ("start", number(1)), ("stop", number(0))]))
            }
            root.append(("decoder", object([("type", string("Sequence")), ("decoders", .array(decoders))])))
            // As [left, right] pairs: SentencePiece pieces may hold spaces, which "left right" cannot.
            let merges: [JSONValue]
            if let listed = v.merges {
                merges = listed.map(string)
            } else {
                merges = try derivedMerges(v, config: config).map { .array([string($0.left), string($0.right)]) }
            }
            var model: [(String, JSONValue)] = [("type", string("BPE")), ("vocab", vocabulary(tokens)),
                                                ("merges", .array(merges)), ("byte_fallback", .bool(true)),
                                                ("fuse_unk", .bool(true))]
            if let unk = v.unknownTokenID { model.append(("unk_token", string(tokens[unk]))) }
            root.append(("model", object(model)))
            addBOS = v.addBOS ?? true
        default:
            throw config.unsupported("tokenizer.ggml.model", "\"\(v.model)\"", "gpt2, llama")
        }

        var added: [JSONValue] = []
        for (id, type) in v.tokenTypes.enumerated() {
            let special: Bool
            switch type {
            case .control, .unknown: special = true
            case .userDefined: special = false
            case .undefined, .normal, .unused, .byte: continue
            }
            added.append(object([("id", number(id)), ("content", string(tokens[id])), ("special", .bool(special)),
                                 ("normalized", .bool(false))]))
        }
        root.append(("added_tokens", .array(added)))
        if addBOS {
            guard let bos = v.bosTokenID else {
                throw config.invalid("tokenizer.ggml.bos_token_id", "a token id (add_bos_token is true)")
            }
            let name = tokens[bos]
            root.append(("post_processor", object([
                ("type", string("TemplateProcessing")),
                ("single", .array([object([("SpecialToken", object([("id", string(name))]))]),
                                   object([("Sequence", object([("id", string("A"))]))])])),
                ("special_tokens", object([(name, object([("ids", .array([number(bos)]))]))])),
            ])))
        }
        try self.init(root: object(root), fileName: v.file)
    }
}

private func vocabulary(_ tokens: [String]) -> JSONValue {
    .object(tokens.enumerated().map { (key: $0.element, value: .number(Double($0.offset))) })
}

/// Merges for a SentencePiece vocabulary without them, as transformers' `generate_merges` derives
/// them: every split of a token into two tokens of the vocabulary, best token score first (then
/// longer left, longer right piece), ties kept in (token order, left id, right id) order. Lengths and
/// cuts count Unicode scalars, as Python's do.
private func derivedMerges(_ v: GGUFVocabulary, config: ConfigReader) throws -> [(left: String, right: String)] {
    guard v.scores.count == v.tokens.count else {
        throw config.invalid("tokenizer.ggml.scores", "one score per token when the file has no merges (\(v.tokens.count), found \(v.scores.count))")
    }
    var ids: [String: Int] = [:]
    for (id, t) in v.tokens.enumerated() { ids[t] = id }  // a later duplicate wins, as in a Python dict
    struct Candidate { let left: String; let right: String; let leftID: Int; let rightID: Int; let score: Float; let order: Int
        var leftLength: Int { left.unicodeScalars.count }
        var rightLength: Int { right.unicodeScalars.count }
    }
    var candidates: [Candidate] = []
    for (id, token) in v.tokens.enumerated() where ids[token] == id {
        let scalars = Array(token.unicodeScalars)
        var local: [Candidate] = []
        for cut in scalars.indices.dropFirst() {
            let left = String(String.UnicodeScalarView(scalars[..<cut])), right = String(String.UnicodeScalarView(scalars[cut...]))
            if let l = ids[left], let r = ids[right] {
                local.append(Candidate(left: left, right: right, leftID: l, rightID: r, score: v.scores[id], order: 0))
            }
        }
        local.sort { ($0.leftID, $0.rightID) < ($1.leftID, $1.rightID) }
        for c in local {
            candidates.append(Candidate(left: c.left, right: c.right, leftID: c.leftID, rightID: c.rightID, score: c.score,
                                        order: candidates.count))
        }
    }
    // Python's sort(reverse=True) is stable too: equal keys keep their order.
    candidates.sort {
        if $0.score != $1.score { return $0.score > $1.score }
        if $0.leftLength != $1.leftLength { return $0.leftLength > $1.leftLength }
        if $0.rightLength != $1.rightLength { return $0.rightLength > $1.rightLength }
        return $0.order < $1.order
    }
    return candidates.map { ($0.left, $0.right) }
}
