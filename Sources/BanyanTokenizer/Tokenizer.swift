import Foundation

/// A Hugging Face `tokenizer.json` tokenizer (byte-level BPE or SentencePiece-style BPE) that
/// reproduces `tokenizers`' ids and decoded text for the supported component types.
public struct Tokenizer: Sendable {
    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let postProcessor: PostProcessor?
    /// Added tokens matched in the raw text (`normalized: false`) and in normalized text.
    let rawAddedTokens: AddedTokenMatcher
    let normalizedAddedTokens: AddedTokenMatcher
    let addedTokenToID: [[UInt8]: Int32]
    /// id → token string (an added token's content wins over the model's), "" for holes.
    let idToToken: [String]
    let tokenExists: [Bool]
    let isSpecial: [Bool]
    /// Per id, the bytes the decoder produces: `decodeBytes[decodeOffsets[id]..<decodeOffsets[id+1]]`.
    let decodeBytes: [UInt8]
    let decodeOffsets: [Int32]
    /// Per id, the byte of a `<0xNN>` token under `ByteFallback`, else -1.
    let fallbackByte: [Int16]
    let decoderPlan: DecoderPlan

    /// Number of ids: one past the largest model or added-token id.
    public let vocabularySize: Int
    /// Beginning-of-sequence id the post-processor adds before the text, if any.
    public let bosTokenID: Int?
    /// End-of-sequence id the post-processor adds after the text, if any.
    public let eosTokenID: Int?

    /// Loads `path`: a `tokenizer.json` file or a folder containing one.
    public static func load(path: String) throws -> Tokenizer {
        var file = path
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            file = (path as NSString).appendingPathComponent("tokenizer.json")
        }
        guard let data = FileManager.default.contents(atPath: file) else { throw TokenizerError.unreadable(path: file) }
        return try Tokenizer(json: [UInt8](data), fileName: file)
    }

    /// Parses the contents of a `tokenizer.json`; `fileName` only labels errors.
    public init(json: [UInt8], fileName: String = "tokenizer.json") throws {
        try self.init(root: try JSONParser.parse(json, file: fileName), fileName: fileName)
    }

    /// Builds the tokenizer a parsed `tokenizer.json` document describes (also the document a GGUF
    /// file's metadata is translated into); `fileName` labels errors.
    init(root: JSONValue, fileName: String) throws {
        let config = ConfigReader(file: fileName)
        guard root.members != nil else { throw config.invalid("root", "an object") }

        if let truncation = root["truncation"], !truncation.isNull {
            throw config.unsupported("truncation", "(set)", "null")
        }
        if let padding = root["padding"], !padding.isNull {
            throw config.unsupported("padding", "(set)", "null")
        }
        let model = try config.model(root["model"])
        normalizer = try config.normalizer(root["normalizer"], field: "normalizer")
        preTokenizer = try config.preTokenizer(root["pre_tokenizer"], field: "pre_tokenizer")

        // Added tokens extend (or relabel) the model vocab.
        var idToToken = model.idToToken
        var isSpecial = [Bool](repeating: false, count: idToToken.count)
        var exists = idToToken.map { !$0.isEmpty }
        var raw: [AddedTokenMatcher.Entry] = []
        var normalized: [AddedTokenMatcher.Entry] = []
        var addedTokenToID: [[UInt8]: Int32] = [:]
        for (index, item) in (root["added_tokens"]?.array ?? []).enumerated() {
            let field = "added_tokens[\(index)]"
            guard let id = item["id"]?.int, id >= 0, id < 1 << 30 else { throw config.invalid("\(field).id", "a non-negative integer") }
            guard let content = item["content"]?.string, !content.isEmpty else {
                throw config.invalid("\(field).content", "a non-empty string")
            }
            if id >= idToToken.count {
                idToToken += [String](repeating: "", count: id + 1 - idToToken.count)
                isSpecial += [Bool](repeating: false, count: id + 1 - isSpecial.count)
                exists += [Bool](repeating: false, count: id + 1 - exists.count)
            }
            idToToken[id] = content
            exists[id] = true
            isSpecial[id] = item["special"]?.bool ?? false
            addedTokenToID[Array(content.utf8)] = Int32(id)
            let isNormalized = item["normalized"]?.bool ?? !isSpecial[id]
            var scalars = content.unicodeScalars.map(\.value)
            // Normalized tokens are looked for in normalized text, so match their normalized form.
            if isNormalized, let normalizer { scalars = normalizer.apply(scalars) }
            let entry = AddedTokenMatcher.Entry(
                content: scalars, id: Int32(id), leftStrip: item["lstrip"]?.bool ?? false,
                rightStrip: item["rstrip"]?.bool ?? false, singleWord: item["single_word"]?.bool ?? false)
            if isNormalized { normalized.append(entry) } else { raw.append(entry) }
        }
        self.model = model
        self.idToToken = idToToken
        self.isSpecial = isSpecial
        self.tokenExists = exists
        self.addedTokenToID = addedTokenToID
        self.rawAddedTokens = AddedTokenMatcher(raw)
        self.normalizedAddedTokens = AddedTokenMatcher(normalized)
        vocabularySize = idToToken.count

        let lookup: (String) -> Int32? = { addedTokenToID[Array($0.utf8)] ?? model.vocab.lookup($0) }
        postProcessor = try config.postProcessor(root["post_processor"], field: "post_processor", lookup: lookup)
        let (bos, eos) = postProcessor?.boundaryTokens() ?? (nil, nil)
        bosTokenID = bos.map(Int.init)
        eosTokenID = eos.map(Int.init)

        let decoder = try config.decoder(root["decoder"])
        decoderPlan = decoder.plan
        var bytes: [UInt8] = []
        var offsets: [Int32] = [0]
        var fallback = [Int16](repeating: -1, count: idToToken.count)
        offsets.reserveCapacity(idToToken.count + 1)
        for (id, token) in idToToken.enumerated() {
            switch decoder.tokenOutput(token) {
            case .bytes(let b): bytes.append(contentsOf: b)
            case .fallbackByte(let b): fallback[id] = Int16(b)
            }
            offsets.append(Int32(bytes.count))
        }
        decodeBytes = bytes
        decodeOffsets = offsets
        fallbackByte = fallback
    }

    /// The token string of `id` (vocab form, e.g. "Ġthe" or "▁the"), or nil if there is none.
    public func token(forID id: Int) -> String? {
        guard id >= 0, id < vocabularySize, tokenExists[id] else { return nil }
        return idToToken[id]
    }

    /// The id of a token string (added tokens first, then the model vocab), or nil.
    public func id(forToken token: String) -> Int? {
        (addedTokenToID[Array(token.utf8)] ?? model.vocab.lookup(token)).map(Int.init)
    }

    /// Whether `id` is an added token marked `special` (skipped by `skipSpecialTokens`).
    public func isSpecialToken(_ id: Int) -> Bool {
        id >= 0 && id < vocabularySize && isSpecial[id]
    }

    /// Encodes text; `addSpecialTokens` applies the post-processor (e.g. BOS), as `tokenizers` does.
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int] {
        let scalars = text.unicodeScalars.map(\.value)
        var ids: [Int32] = []
        ids.reserveCapacity(scalars.count / 3 + 4)
        var cache: [[UInt32]: [Int32]] = [:]
        // Same order as `AddedVocabulary::extract_and_normalize`: raw added tokens, then the
        // normalizer per remaining piece, then normalized added tokens, then pre-tokenize + model.
        rawAddedTokens.split(scalars) { segment in
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let range):
                var piece = Array(scalars[range])
                if let normalizer { piece = normalizer.apply(piece) }
                normalizedAddedTokens.split(piece) { inner in
                    switch inner {
                    case .token(let id):
                        ids.append(id)
                    case .text(let innerRange):
                        let words = innerRange == piece.indices ? [piece] : [Array(piece[innerRange])]
                        for word in preTokenizer?.apply(words) ?? words {
                            model.encodeWord(word, cache: &cache, into: &ids)
                        }
                    }
                }
            }
        }
        if addSpecialTokens, let postProcessor { ids = postProcessor.apply(ids) }
        return ids.map(Int.init)
    }

    /// Decodes ids to text; throws on ids out of range.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) throws -> String {
        // The same steps as `IncrementalDecoder` over the whole byte stream at once (the
        // tests check the two agree on every case).
        var decoder = IncrementalDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
        return try decoder.decodeAll(ids)
    }

    /// Returns `bytes` as a String, or throws naming the offset of the first invalid byte
    /// (for rejecting bad stdin before encoding).
    public static func validateUTF8(_ bytes: [UInt8]) throws -> String {
        var i = 0
        while i < bytes.count {
            let length = LossyUTF8Stream.sequence(bytes, at: i)
            if length <= 0 { throw TokenizerError.invalidUTF8(byteOffset: i) }
            i += length
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
