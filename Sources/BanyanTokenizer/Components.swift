/// Added tokens recognised in text before the model runs, with `tokenizers`' leftmost-longest
/// matching and its `lstrip` / `rstrip` / `single_word` rules.
struct AddedTokenMatcher: Sendable {
    struct Entry: Sendable {
        var content: [UInt32]
        var id: Int32
        var leftStrip: Bool
        var rightStrip: Bool
        var singleWord: Bool
    }
    enum Segment { case text(Range<Int>), token(Int32) }

    private let entries: [Entry]
    /// Entry indices by first scalar, longest content first, so the first hit is the longest.
    private let byFirstScalar: [UInt32: [Int]]

    init(_ entries: [Entry]) {
        self.entries = entries
        var table: [UInt32: [Int]] = [:]
        for (i, e) in entries.enumerated() { table[e.content[0], default: []].append(i) }
        for key in table.keys { table[key]!.sort { entries[$0].content.count > entries[$1].content.count } }
        byFirstScalar = table
    }

    private static func isWhitespace(_ v: UInt32) -> Bool {
        Unicode.Scalar(v)?.properties.isWhitespace ?? false
    }

    /// Regex `\w` as the Rust `regex` crate defines it, for `single_word`.
    private static func isWordScalar(_ v: UInt32) -> Bool {
        guard let p = Unicode.Scalar(v)?.properties else { return false }
        switch p.generalCategory {
        case .decimalNumber, .connectorPunctuation, .nonspacingMark, .spacingMark, .enclosingMark: return true
        default: return p.isAlphabetic || p.isJoinControl
        }
    }

    /// Calls `body` with the text gaps and matched tokens of `s`, in order.
    func split(_ s: [UInt32], _ body: (Segment) -> Void) {
        if entries.isEmpty || s.isEmpty {
            if !s.isEmpty { body(.text(0..<s.count)) }
            return
        }
        var textStart = 0
        var i = 0
        while i < s.count {
            guard let candidates = byFirstScalar[s[i]],
                  let hit = candidates.first(where: { c in
                      let e = entries[c].content
                      return i + e.count <= s.count && s[i..<(i + e.count)].elementsEqual(e)
                  })
            else { i += 1; continue }
            let entry = entries[hit]
            let matchEnd = i + entry.content.count
            var start = i
            var stop = matchEnd
            i = matchEnd  // the match is consumed even when single_word rejects it, as upstream
            if entry.singleWord {
                let startOK = start == 0 || !Self.isWordScalar(s[start - 1])
                let stopOK = stop == s.count || !Self.isWordScalar(s[stop])
                if !startOK || !stopOK { continue }
            }
            if entry.leftStrip {
                while start > textStart && Self.isWhitespace(s[start - 1]) { start -= 1 }
            }
            if entry.rightStrip {
                while stop < s.count && Self.isWhitespace(s[stop]) { stop += 1 }
            }
            if textStart < start { body(.text(textStart..<start)) }
            body(.token(entry.id))
            textStart = stop
            i = max(i, stop)
        }
        if textStart < s.count { body(.text(textStart..<s.count)) }
    }
}

/// A post-processor: adds special tokens around the ids when `addSpecialTokens` is true.
indirect enum PostProcessor: Sendable {
    /// `TemplateProcessing` single-sequence template: ids before and after the text.
    case template(prefix: [Int32], suffix: [Int32])
    /// `ByteLevel`: only trims offsets, so ids are unchanged.
    case byteLevel
    case sequence([PostProcessor])

    func apply(_ ids: [Int32]) -> [Int32] {
        switch self {
        case .template(let prefix, let suffix): return prefix + ids + suffix
        case .byteLevel: return ids
        case .sequence(let steps): return steps.reduce(ids) { $1.apply($0) }
        }
    }

    /// The single ids placed directly before and after the text (BOS / EOS), if any.
    func boundaryTokens() -> (Int32?, Int32?) {
        switch self {
        case .template(let prefix, let suffix): return (prefix.last, suffix.first)
        case .byteLevel: return (nil, nil)
        case .sequence(let steps):
            var result: (Int32?, Int32?) = (nil, nil)
            for step in steps {
                let (b, e) = step.boundaryTokens()
                result = (b ?? result.0, e ?? result.1)
            }
            return result
        }
    }
}

/// The `decoder` of `tokenizer.json`, reduced to a per-token output plus a `DecoderPlan`.
struct DecoderConfig {
    enum Output { case bytes([UInt8]), fallbackByte(UInt8) }
    var plan = DecoderPlan()
    var byteLevel = false
    var replacements: [(pattern: String, content: String)] = []
    var byteFallback = false

    static let scalarToByte: [UInt32: UInt8] = {
        var table: [UInt32: UInt8] = [:]
        for (b, s) in PreTokenizer.byteToScalar.enumerated() { table[s] = UInt8(b) }
        return table
    }()

    func tokenOutput(_ token: String) -> Output {
        if byteLevel {
            // `ByteLevel` maps each character back to its byte; a token with a character outside
            // the table (an added token) contributes its own UTF-8 instead.
            var bytes: [UInt8] = []
            for scalar in token.unicodeScalars {
                guard let b = Self.scalarToByte[scalar.value] else { return .bytes(Array(token.utf8)) }
                bytes.append(b)
            }
            return .bytes(bytes)
        }
        var text = token
        for (pattern, content) in replacements { text = Self.replacing(text, pattern, content) }
        if byteFallback {
            let u = Array(text.utf8)
            if u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"),
               u[5] == UInt8(ascii: ">"), let b = UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16) {
                return .fallbackByte(b)
            }
        }
        return .bytes(Array(text.utf8))
    }

    /// Non-overlapping left-to-right literal replacement, by scalars (Rust `str::replace`).
    static func replacing(_ text: String, _ pattern: String, _ content: String) -> String {
        let s = text.unicodeScalars.map(\.value)
        let out = Normalizer.replace(pattern: pattern.unicodeScalars.map(\.value),
                                     content: content.unicodeScalars.map(\.value)).apply(s)
        var view = String.UnicodeScalarView()
        view.append(contentsOf: out.map { Unicode.Scalar($0)! })
        return String(view)
    }
}

/// Reads the component configs out of parsed JSON, producing errors that name the field.
struct ConfigReader {
    let file: String

    func invalid(_ field: String, _ expected: String) -> TokenizerError {
        .invalidField(file: file, field: field, expected: expected)
    }

    func unsupported(_ field: String, _ found: String, _ supported: String) -> TokenizerError {
        .unsupportedValue(file: file, field: field, found: found, supported: supported)
    }

    private func type(_ value: JSONValue, _ field: String) throws -> String {
        guard let type = value["type"]?.string else { throw invalid("\(field).type", "a string") }
        return type
    }

    private func scalars(_ value: JSONValue?, _ field: String) throws -> [UInt32] {
        guard let s = value?.string else { throw invalid(field, "a string") }
        return s.unicodeScalars.map(\.value)
    }

    // MARK: model

    func model(_ value: JSONValue?) throws -> BPEModel {
        guard let value, value.members != nil else { throw invalid("model", "an object") }
        let type = value["type"]?.string ?? (value["merges"] != nil ? "BPE" : "(missing)")
        guard type == "BPE" else { throw unsupported("model.type", "\"\(type)\"", "BPE") }
        for field in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = value[field], !v.isNull, v.string != "" { throw unsupported("model.\(field)", "(set)", "null") }
        }
        if let dropout = value["dropout"], !dropout.isNull, dropout.double != 0 {
            throw unsupported("model.dropout", "(set)", "null")
        }
        guard let vocabMembers = value["vocab"]?.members else { throw invalid("model.vocab", "an object") }
        var vocab = TokenTable(minimumCapacity: vocabMembers.count)
        var maxID = -1
        for (token, idValue) in vocabMembers {
            guard let id = idValue.int, id >= 0, id < 1 << 30 else {
                throw invalid("model.vocab[\"\(token)\"]", "a non-negative integer id")
            }
            vocab.insert(token, id: Int32(id))
            maxID = max(maxID, id)
        }
        var idToToken = [String](repeating: "", count: maxID + 1)
        var bmp = [Int32](repeating: -1, count: 0x10000)
        var astral: [UInt32: Int32] = [:]
        let hasDuplicates = vocab.count != vocabMembers.count
        for (token, idValue) in vocabMembers {
            let id = Int32(idValue.int!)
            if hasDuplicates && vocab.lookup(token) != id { continue }  // a later duplicate key won
            idToToken[Int(id)] = token
            var it = token.unicodeScalars.makeIterator()
            if let first = it.next(), it.next() == nil {
                if first.value < 0x10000 { bmp[Int(first.value)] = id } else { astral[first.value] = id }
            }
        }

        guard let mergeList = value["merges"]?.array else { throw invalid("model.merges", "an array") }
        var merges = MergeTable(minimumCapacity: mergeList.count)
        var joined: [UInt8] = []
        for (rank, item) in mergeList.enumerated() {
            let field = "model.merges[\(rank)]"
            if var pair = item.string {
                // "a b": exactly one space separates the two tokens. Split on bytes: splitting the
                // String would run grapheme segmentation on 280k merges.
                let ok = pair.withUTF8 { buf -> Bool in
                    guard let space = buf.firstIndex(of: 0x20), buf[(space + 1)...].firstIndex(of: 0x20) == nil,
                          let l = vocab.lookup(UnsafeBufferPointer(rebasing: buf[..<space])),
                          let r = vocab.lookup(UnsafeBufferPointer(rebasing: buf[(space + 1)...])) else { return false }
                    joined.removeAll(keepingCapacity: true)
                    joined.append(contentsOf: buf[..<space])
                    joined.append(contentsOf: buf[(space + 1)...])
                    guard let merged = vocab.lookup(joined) else { return false }
                    merges.insert(MergeTable.key(l, r), rank: rank, newID: merged)
                    return true
                }
                if !ok { throw invalid(field, "\"left right\" with left, right and left+right in model.vocab (found \"\(pair)\")") }
            } else if let pair = item.array, pair.count == 2, let left = pair[0].string, let right = pair[1].string {
                guard let l = vocab.lookup(left) else { throw invalid(field, "token \"\(left)\" in model.vocab") }
                guard let r = vocab.lookup(right) else { throw invalid(field, "token \"\(right)\" in model.vocab") }
                joined = Array(left.utf8) + Array(right.utf8)
                guard let merged = vocab.lookup(joined) else {
                    throw invalid(field, "merged token \"\(left + right)\" in model.vocab")
                }
                merges.insert(MergeTable.key(l, r), rank: rank, newID: merged)
            } else {
                throw invalid(field, "a \"left right\" string or a [left, right] pair")
            }
        }

        var fallback: [Int32]?
        if value["byte_fallback"]?.bool == true {
            var ids = [Int32](repeating: -1, count: 256)
            let hex = Array("0123456789ABCDEF")
            for b in 0..<256 { ids[b] = vocab.lookup("<0x\(hex[b >> 4])\(hex[b & 15])>") ?? -1 }
            fallback = ids
        }
        var unknownID: Int32?
        if let unk = value["unk_token"], !unk.isNull {
            guard let name = unk.string, let id = vocab.lookup(name) else { throw invalid("model.unk_token", "a token in model.vocab") }
            unknownID = id
        }
        return BPEModel(vocab: vocab, idToToken: idToToken, bmpScalarID: bmp, astralScalarID: astral, merges: merges,
                        byteFallbackIDs: fallback, unknownID: unknownID,
                        fuseUnknown: value["fuse_unk"]?.bool ?? false, ignoreMerges: value["ignore_merges"]?.bool ?? false)
    }

    // MARK: normalizer

    static let supportedNormalizers = "Sequence, Prepend, Replace (String pattern)"

    func normalizer(_ value: JSONValue?, field: String) throws -> Normalizer? {
        guard let value, !value.isNull else { return nil }
        switch try type(value, field) {
        case "Sequence":
            guard let items = value["normalizers"]?.array else { throw invalid("\(field).normalizers", "an array") }
            return .sequence(try items.enumerated().compactMap { try normalizer($1, field: "\(field).normalizers[\($0)]") })
        case "Prepend":
            return .prepend(try scalars(value["prepend"], "\(field).prepend"))
        case "Replace":
            guard let pattern = value["pattern"]?["String"]?.string, !pattern.isEmpty else {
                let found = value["pattern"]?["Regex"]?.string.map { "Regex \"\($0)\"" } ?? "(missing)"
                throw unsupported("\(field).pattern", found, "a non-empty String pattern")
            }
            return .replace(pattern: pattern.unicodeScalars.map(\.value), content: try scalars(value["content"], "\(field).content"))
        case let other:
            throw unsupported("\(field) type", "\"\(other)\"", Self.supportedNormalizers)
        }
    }

    // MARK: pre-tokenizer

    static let supportedPreTokenizers = "Sequence, Split, ByteLevel, Digits (individual)"

    func preTokenizer(_ value: JSONValue?, field: String) throws -> PreTokenizer? {
        guard let value, !value.isNull else { return nil }
        switch try type(value, field) {
        case "Sequence":
            guard let items = value["pretokenizers"]?.array else { throw invalid("\(field).pretokenizers", "an array") }
            return .sequence(try items.enumerated().compactMap { try preTokenizer($1, field: "\(field).pretokenizers[\($0)]") })
        case "Split":
            let pattern: SplitPattern
            if let literal = value["pattern"]?["String"]?.string {
                pattern = .literal(literal.unicodeScalars.map(\.value))
            } else if let regex = value["pattern"]?["Regex"]?.string {
                guard let known = SplitRegex(pattern: regex) else {
                    throw unsupported("\(field).pattern.Regex", "\"\(regex)\"",
                                      "the GPT-2, Llama 3, Qwen2 and \\p{N} split patterns, or a String pattern")
                }
                pattern = .regex(known)
            } else {
                throw invalid("\(field).pattern", "{\"String\": ...} or {\"Regex\": ...}")
            }
            let behaviorName = value["behavior"]?.string ?? "(missing)"
            guard let behavior = SplitBehavior(rawValue: behaviorName) else {
                throw unsupported("\(field).behavior", "\"\(behaviorName)\"",
                                  "Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous")
            }
            return .split(pattern, behavior, invert: value["invert"]?.bool ?? false)
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: value["add_prefix_space"]?.bool ?? true,
                              useRegex: value["use_regex"]?.bool ?? true)
        case "Digits":
            // tokenizers splits on `char::is_numeric` (Nd, Nl, No): `\p{N}`, each digit isolated.
            guard value["individual_digits"]?.bool == true else {
                throw unsupported("\(field).individual_digits", "false", "true")
            }
            return .split(.regex(.digit), .isolated, invert: false)
        case let other:
            throw unsupported("\(field) type", "\"\(other)\"", Self.supportedPreTokenizers)
        }
    }

    // MARK: post-processor

    static let supportedPostProcessors = "TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence"

    func postProcessor(_ value: JSONValue?, field: String, lookup: (String) -> Int32?) throws -> PostProcessor? {
        guard let value, !value.isNull else { return nil }
        switch try type(value, field) {
        case "ByteLevel":
            return .byteLevel
        case "Sequence":
            guard let items = value["processors"]?.array else { throw invalid("\(field).processors", "an array") }
            return .sequence(try items.enumerated().compactMap {
                try postProcessor($1, field: "\(field).processors[\($0)]", lookup: lookup)
            })
        case "RobertaProcessing", "BertProcessing":
            func special(_ key: String) throws -> Int32 {
                guard let pair = value[key]?.array, pair.count == 2, let id = pair[1].int else {
                    throw invalid("\(field).\(key)", "a [token, id] pair")
                }
                return Int32(id)
            }
            return .template(prefix: [try special("cls")], suffix: [try special("sep")])
        case "TemplateProcessing":
            guard let single = value["single"]?.array else { throw invalid("\(field).single", "an array") }
            var prefix: [Int32] = []
            var suffix: [Int32] = []
            var sawSequence = false
            for (index, piece) in single.enumerated() {
                if piece["Sequence"] != nil { sawSequence = true; continue }
                guard let name = piece["SpecialToken"]?["id"]?.string else {
                    throw invalid("\(field).single[\(index)]", "{\"Sequence\": ...} or {\"SpecialToken\": ...}")
                }
                var ids: [Int32] = []
                if let listed = value["special_tokens"]?[name]?["ids"]?.array {
                    ids = try listed.map {
                        guard let id = $0.int else { throw invalid("\(field).special_tokens.\(name).ids", "integers") }
                        return Int32(id)
                    }
                } else if let id = lookup(name) {
                    ids = [id]
                } else {
                    throw invalid("\(field).special_tokens.\(name)", "an entry for a token used in the template")
                }
                if sawSequence { suffix += ids } else { prefix += ids }
            }
            return .template(prefix: prefix, suffix: suffix)
        case let other:
            throw unsupported("\(field) type", "\"\(other)\"", Self.supportedPostProcessors)
        }
    }

    // MARK: decoder

    static let supportedDecoders = "ByteLevel, Sequence of Replace/ByteFallback/Fuse/Strip"

    func decoder(_ value: JSONValue?) throws -> DecoderConfig {
        var config = DecoderConfig()
        guard let value, !value.isNull else {
            config.plan.joining = .space
            return config
        }
        let steps: [(JSONValue, String)]
        if try type(value, "decoder") == "Sequence" {
            guard let items = value["decoders"]?.array else { throw invalid("decoder.decoders", "an array") }
            steps = items.enumerated().map { ($1, "decoder.decoders[\($0)]") }
        } else {
            steps = [(value, "decoder")]
        }
        // Only orders whose result is a per-token output plus a whole-text Strip are accepted:
        // Replace* ByteFallback? Fuse? Strip?, or ByteLevel alone.
        var stage = 0  // 0: replaces, 1: after ByteFallback, 2: after Fuse, 3: after Strip
        for (step, field) in steps {
            let kind = try type(step, field)
            switch kind {
            case "ByteLevel" where steps.count == 1:
                config.byteLevel = true
            case "Replace" where stage == 0:
                guard let pattern = step["pattern"]?["String"]?.string, !pattern.isEmpty else {
                    throw unsupported("\(field).pattern", "(not a String)", "a non-empty String pattern")
                }
                guard let content = step["content"]?.string else { throw invalid("\(field).content", "a string") }
                config.replacements.append((pattern, content))
            case "ByteFallback" where stage == 0:
                config.byteFallback = true
                stage = 1
            case "Fuse" where stage <= 1:
                stage = 2
            case "Strip" where stage == 2:
                let content = try scalars(step["content"], "\(field).content")
                guard content.count == 1 else { throw invalid("\(field).content", "one character") }
                config.plan.stripContent = content[0]
                config.plan.stripStart = step["start"]?.int ?? 0
                config.plan.stripStop = step["stop"]?.int ?? 0
                stage = 3
            case "ByteLevel", "Replace", "ByteFallback", "Fuse", "Strip":
                throw unsupported(field, "\"\(kind)\" in this position", Self.supportedDecoders)
            default:
                throw unsupported("\(field) type", "\"\(kind)\"", Self.supportedDecoders)
            }
        }
        return config
    }
}
