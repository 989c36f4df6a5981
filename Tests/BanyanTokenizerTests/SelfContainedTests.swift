import BanyanTestSupport
import Foundation
import Testing

@testable import BanyanTokenizer

/// Small handwritten `tokenizer.json` files, so a clone without `../shared` still exercises
/// loading, both BPE flavours, added tokens, post-processing, decoding and errors.
enum TinyTokenizers {
    /// GPT-2's byte-to-unicode rule, written out independently of the library's table.
    static func byteCharacter(_ b: Int) -> String {
        let direct = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
        if direct { return String(UnicodeScalar(UInt8(b))) }
        var n = 0
        for c in 0..<b where !((33...126).contains(c) || (161...172).contains(c) || (174...255).contains(c)) { n += 1 }
        return String(UnicodeScalar(UInt32(256 + n))!)
    }

    static func jsonString(_ s: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed])
        let array = String(decoding: data, as: UTF8.self)
        return String(array.dropFirst().dropLast())
    }

    /// Byte-level BPE (GPT-2 split regex) with merges "Ġ t", "h e", "Ġt he" (as pairs) and a
    /// BOS/EOS template.
    static var byteLevel: String {
        var vocab = (0..<256).map { "\(jsonString(byteCharacter($0))): \($0)" }
        vocab += ["\"Ġt\": 256", "\"he\": 257", "\"Ġthe\": 258"]
        return """
        {"version": "1.0", "truncation": null, "padding": null,
         "added_tokens": [
           {"id": 259, "content": "<|begin|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
           {"id": 260, "content": "<|end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
           {"id": 261, "content": "<tool>", "single_word": false, "lstrip": true, "rstrip": true, "normalized": false, "special": false}],
         "normalizer": null,
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
         "post_processor": {"type": "TemplateProcessing",
           "single": [{"SpecialToken": {"id": "<|begin|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|end|>", "type_id": 0}}],
           "pair": [], "special_tokens": {"<|begin|>": {"id": "<|begin|>", "ids": [259], "tokens": ["<|begin|>"]},
                                          "<|end|>": {"id": "<|end|>", "ids": [260], "tokens": ["<|end|>"]}}},
         "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
         "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                   "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                   "vocab": {\(vocab.joined(separator: ", "))},
                   "merges": [["Ġ", "t"], ["h", "e"], ["Ġt", "he"]]}}
        """
    }

    /// SentencePiece-style BPE like Llama 2: "▁" normalizer, byte fallback, strip decoder.
    static var sentencePiece: String {
        var vocab = ["\"<unk>\": 0", "\"<s>\": 1", "\"</s>\": 2"]
        let hex = Array("0123456789ABCDEF")
        vocab += (0..<256).map { "\"<0x\(hex[$0 >> 4])\(hex[$0 & 15])>\": \(3 + $0)" }
        vocab += ["\"▁\": 259", "\"a\": 260", "\"b\": 261", "\"▁a\": 262", "\"ab\": 263", "\"▁ab\": 264"]
        return """
        {"added_tokens": [
           {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
           {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
           {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
         "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                        {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
         "pre_tokenizer": null,
         "post_processor": {"type": "TemplateProcessing",
           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
           "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
         "decoder": {"type": "Sequence", "decoders": [
           {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
           {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
         "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
                   "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true,
                   "vocab": {\(vocab.joined(separator: ", "))},
                   "merges": ["▁ a", "a b", "▁a b"]}}
        """
    }

    static func load(_ json: String) throws -> Tokenizer {
        try Tokenizer(json: Array(json.utf8), fileName: "tiny/tokenizer.json")
    }
}

@Suite struct SelfContainedTests {
    @Test func byteLevelEncodeDecode() throws {
        let t = try TinyTokenizers.load(TinyTokenizers.byteLevel)
        #expect(t.vocabularySize == 262)
        #expect(t.encode(" the the") == [258, 258])
        #expect(t.encode("the") == [116, 257])  // "t" alone, then merged "he"
        #expect(t.encode(" the", addSpecialTokens: true) == [259, 258, 260])
        #expect(t.bosTokenID == 259 && t.eosTokenID == 260)
        // Added tokens are found inside text; `<tool>` also eats the spaces around it.
        #expect(t.encode("a<|end|>b") == [97, 260, 98])
        #expect(t.encode("a  <tool>  b") == [97, 261, 98])
        #expect(try t.decode([259, 258, 260]) == "<|begin|> the<|end|>")
        #expect(try t.decode([259, 258, 260], skipSpecialTokens: true) == " the")
        #expect(t.token(forID: 258) == "Ġthe")
        #expect(t.id(forToken: "Ġt") == 256)
    }

    @Test func byteLevelRandomRoundTrip() throws {
        let t = try TinyTokenizers.load(TinyTokenizers.byteLevel)
        let seed: UInt64 = 20_240_611
        print("byteLevelRandomRoundTrip seed \(seed)")
        var rng = SeededRNG(seed: seed)
        let pool: [Unicode.Scalar] = ["t", "h", "e", " ", "\n", "\t", "'", "s", "1", "é", "日", "😀", "\u{301}", "<", "|"]
        for _ in 0..<300 {
            var view = String.UnicodeScalarView()
            for _ in 0..<Int.random(in: 0..<40, using: &rng) { view.append(pool.randomElement(using: &rng)!) }
            let text = String(view)
            let ids = t.encode(text)
            let decoded = try t.decode(ids)
            #expect(sameScalars(decoded, text), "\(text.debugDescription)")
            // Streaming must emit every character exactly once, never half of one.
            var decoder = IncrementalDecoder(tokenizer: t)
            var streamed = ""
            for id in ids {
                let piece = try decoder.append(id)
                #expect(!piece.unicodeScalars.contains("\u{FFFD}"))
                streamed += piece
            }
            streamed += decoder.finish()
            #expect(sameScalars(streamed, text))
        }
    }

    @Test func sentencePieceStyle() throws {
        let t = try TinyTokenizers.load(TinyTokenizers.sentencePiece)
        #expect(t.encode("ab ab") == [264, 264])
        #expect(t.encode("ab ab", addSpecialTokens: true) == [1, 264, 264])
        #expect(t.bosTokenID == 1)
        // "é" is not in the vocab: byte fallback to <0xC3><0xA9>.
        #expect(t.encode("é") == [259, 3 + 0xC3, 3 + 0xA9])
        // The normalizer runs per piece between added tokens, so each piece gets its own "▁".
        #expect(t.encode("a<s>b") == [262, 1, 259, 261])
        #expect(try t.decode([259, 3 + 0xC3, 3 + 0xA9]) == "é")
        #expect(try t.decode([1, 264, 264]) == "<s> ab ab")
        #expect(try t.decode([1, 264, 264], skipSpecialTokens: true) == "ab ab")
        // An invalid byte run decodes to one U+FFFD per byte, as `ByteFallback` does.
        #expect(try t.decode([3 + 0xC3, 3 + 0xC3, 260]) == "\u{FFFD}\u{FFFD}a")

        var decoder = IncrementalDecoder(tokenizer: t)
        #expect(try decoder.append(259) == "")           // the leading space is stripped
        #expect(try decoder.append(3 + 0xC3) == "")      // byte run held until it ends
        #expect(try decoder.append(3 + 0xA9) == "")
        #expect(try decoder.append(262) == "é a")
        #expect(decoder.finish() == "")
    }

    @Test func incompleteUTF8IsHeldThenFlushed() throws {
        let t = try TinyTokenizers.load(TinyTokenizers.byteLevel)
        let ids = t.encode("日")  // three byte tokens, no merges
        #expect(ids.count == 3)
        var decoder = IncrementalDecoder(tokenizer: t)
        #expect(try decoder.append(ids[0]) == "")
        #expect(try decoder.append(ids[1]) == "")
        #expect(try decoder.append(ids[2]) == "日")
        var truncated = IncrementalDecoder(tokenizer: t)
        #expect(try truncated.append(ids[0]) == "")
        #expect(truncated.finish() == "\u{FFFD}")
        #expect(try t.decode(Array(ids.prefix(2))) == "\u{FFFD}")
        #expect(try t.decode([ids[0], 97]) == "\u{FFFD}a")
    }

    @Test func idsOutOfRange() throws {
        let t = try TinyTokenizers.load(TinyTokenizers.byteLevel)
        #expect(throws: TokenizerError.idOutOfRange(id: 262, vocabularySize: 262)) { try t.decode([262]) }
        #expect(throws: TokenizerError.idOutOfRange(id: -3, vocabularySize: 262)) { try t.decode([-3]) }
        #expect("\(TokenizerError.idOutOfRange(id: 262, vocabularySize: 262))".contains("262"))
    }

    @Test func invalidUTF8() throws {
        #expect(try Tokenizer.validateUTF8(Array("héllo 😀".utf8)) == "héllo 😀")
        #expect(throws: TokenizerError.invalidUTF8(byteOffset: 1)) { try Tokenizer.validateUTF8([0x61, 0xFF]) }
        #expect(throws: TokenizerError.invalidUTF8(byteOffset: 0)) { try Tokenizer.validateUTF8([0xE6, 0x97]) }
        #expect(throws: TokenizerError.invalidUTF8(byteOffset: 0)) { try Tokenizer.validateUTF8([0xED, 0xA0, 0x80]) }
        #expect(throws: TokenizerError.invalidUTF8(byteOffset: 0)) { try Tokenizer.validateUTF8([0xC0, 0x80]) }
    }

    /// Replaces the first occurrence of `old` in the tiny byte-level file and expects an error
    /// whose text contains every fragment.
    func expectLoadError(replacing old: String, with new: String, mentions fragments: [String],
                         base: String = TinyTokenizers.byteLevel) {
        let json = base.replacingOccurrences(of: old, with: new)
        #expect(json != base, "test setup: \(old) not found")
        do {
            _ = try TinyTokenizers.load(json)
            Issue.record("expected an error mentioning \(fragments)")
        } catch {
            let text = "\(error)"
            for fragment in fragments { #expect(text.contains(fragment), "\(text)") }
        }
    }

    @Test func badFiles() throws {
        #expect(throws: TokenizerError.self) { try TinyTokenizers.load("{") }
        #expect(throws: TokenizerError.self) { try TinyTokenizers.load("[1, 2") }
        #expect(throws: TokenizerError.self) { try TinyTokenizers.load("{\"model\": {}} x") }
        do {
            _ = try TinyTokenizers.load("{\"a\": tru}")
            Issue.record("expected invalid JSON")
        } catch {
            #expect("\(error)".contains("tiny/tokenizer.json: invalid JSON"))
        }
        expectLoadError(replacing: #""pre_tokenizer": {"type": "ByteLevel""#, with: #""pre_tokenizer": {"type": "Metaspace""#,
                        mentions: ["tiny/tokenizer.json", "pre_tokenizer type \"Metaspace\" unsupported", "ByteLevel"])
        expectLoadError(replacing: #""model": {"type": "BPE""#, with: #""model": {"type": "WordPiece""#,
                        mentions: ["model.type", "WordPiece"])
        expectLoadError(replacing: #""normalizer": null"#, with: #""normalizer": {"type": "NFKC"}"#,
                        mentions: ["normalizer type \"NFKC\" unsupported"])
        expectLoadError(replacing: #""decoder": {"type": "ByteLevel""#, with: #""decoder": {"type": "WordPiece""#,
                        mentions: ["decoder type \"WordPiece\""])
        expectLoadError(replacing: #""post_processor": {"type": "TemplateProcessing""#,
                        with: #""post_processor": {"type": "Fancy""#, mentions: ["post_processor type \"Fancy\""])
        expectLoadError(replacing: #"["Ġt", "he"]"#, with: #"["Ġt", "zz"]"#, mentions: ["model.merges[2]", "zz"])
        expectLoadError(replacing: #""truncation": null"#, with: #""truncation": {"max_length": 5}"#,
                        mentions: ["truncation"])
        expectLoadError(replacing: #""pre_tokenizer": null"#,
                        with: #""pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\d+"}, "behavior": "Isolated"}"#,
                        mentions: ["pre_tokenizer.pattern.Regex", "\\d+"], base: TinyTokenizers.sentencePiece)
        #expect(throws: TokenizerError.unreadable(path: "/nonexistent/tokenizer.json")) {
            try Tokenizer.load(path: "/nonexistent/tokenizer.json")
        }
    }

    @Test func splitBehaviors() throws {
        let s = Array("a-b--c".unicodeScalars.map(\.value))
        func run(_ behavior: SplitBehavior, invert: Bool = false) -> [String] {
            var out: [[UInt32]] = []
            PreTokenizer.split(s, pattern: .literal([0x2D]), behavior: behavior, invert: invert, into: &out)
            return out.map { String(String.UnicodeScalarView($0.map { Unicode.Scalar($0)! })) }
        }
        #expect(run(.isolated) == ["a", "-", "b", "-", "-", "c"])
        #expect(run(.removed) == ["a", "b", "c"])
        #expect(run(.mergedWithPrevious) == ["a-", "b-", "-", "c"])
        #expect(run(.mergedWithNext) == ["a", "-b", "-", "-c"])
        #expect(run(.contiguous) == ["a", "-", "b", "--", "c"])
        #expect(run(.removed, invert: true) == ["-", "-", "-"])
    }
}
