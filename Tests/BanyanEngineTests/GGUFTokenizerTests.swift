import Foundation
import Testing
import BanyanModel
import BanyanEngine
import BanyanTokenizer
import BanyanTestSupport

/// A text, the ids a reference tokenizer gives it (post-processor applied) and their decoding.
struct TokenizerCase: Decodable, Sendable, CustomStringConvertible {
    let text: String
    let ids: [Int]
    let decoded: String
    var description: String { text.debugDescription }
}

/// Tokenizers built from GGUF metadata against transformers' GGUF tokenizer
/// (scripts/make_gguf_fixtures.py, `tokenizers.json`).
@Suite struct GGUFTokenizerTests {
    static let cases: [String: [TokenizerCase]] = {
        let url = FixturePaths.gguf.appendingPathComponent("tokenizers.json")
        return (try? JSONDecoder().decode([String: [TokenizerCase]].self, from: Data(contentsOf: url))) ?? [:]
    }()

    @Test func casesPresent() { #expect(Self.cases.keys.sorted() == ["llama-q4_1.gguf", "spm-vocab.gguf"]) }

    /// gpt2 byte-level vocabulary (control tokens matched whole, no BOS: add_bos_token false).
    @Test(arguments: cases["llama-q4_1.gguf"] ?? [])
    func byteLevel(_ c: TokenizerCase) throws { try check(c, file: "llama-q4_1.gguf") }

    /// SentencePiece vocabulary without merges (derived from the scores), BOS added by default.
    @Test(arguments: cases["spm-vocab.gguf"] ?? [])
    func sentencePiece(_ c: TokenizerCase) throws { try check(c, file: "spm-vocab.gguf") }

    func check(_ c: TokenizerCase, file: String) throws {
        let tok = try Tokenizer.load(fileOrGGUF: FixturePaths.gguf.appendingPathComponent(file).path)
        #expect(tok.encode(c.text, addSpecialTokens: true) == c.ids)
        #expect(try tok.decode(c.ids) == c.decoded)
    }

    /// The real SmolLM2 vocabulary (`smollm` pre-tokenizer: each digit alone) against its
    /// tokenizer.json rebuilt with Hugging Face `tokenizers`; skipped without ../shared.
    @Test func smolLM2() throws {
        guard let (path, ref) = try SmolLM2GGUFTests.fixture("SmolLM2 GGUF tokenizer") else { return }
        let tok = try #require(try Tokenizer.load(gguf: try GGUFFile(path: path)))
        #expect(tok.vocabularySize == 49152 && tok.bosTokenID == nil && tok.isSpecialToken(1) && tok.isSpecialToken(2))
        for c in ref.tokenizer_cases {
            #expect(tok.encode(c.text, addSpecialTokens: true) == c.ids, "\(c)")
            #expect(try tok.decode(c.ids) == c.decoded, "\(c)")
        }
    }

    /// Metadata the tokenizer needs, malformed: errors name the file and key.
    @Test func malformedMetadata() throws {
        let folder = try TemporaryFolder()
        func load(_ edit: (inout GGUFImage) -> Void) throws -> String {
            var image = GGUFImage.tinyLlama()
            image.metadata.append(("tokenizer.ggml.model", .string("gpt2")))
            edit(&image)
            let url = folder.url.appendingPathComponent("t.gguf")
            try image.write(to: url)
            do {
                _ = try Tokenizer.load(fileOrGGUF: url.path)
                return "loaded"
            } catch {
                return "\(error)".replacingOccurrences(of: url.path, with: "FILE")
            }
        }
        #expect(try load { _ in } == "FILE: tokenizer.ggml.merges missing or invalid (expected an array of strings (gpt2 vocabularies have merges))")
        #expect(try load { $0.metadata.append(("tokenizer.ggml.merges", .array(elementType: 8, []))); $0.metadata.append(("tokenizer.ggml.pre", .string("falcon"))) }
                == "FILE: tokenizer.ggml.pre \"falcon\" unsupported (supported: default, gpt-2, gpt2, llama-bpe, llama-v3, llama3, qwen2, smollm)")
        #expect(try load { $0.metadata[$0.metadata.count - 1].value = .string("rwkv") }
                == "FILE: tokenizer.ggml.model \"rwkv\" unsupported (supported: gpt2, llama)")
        #expect(try load { $0.metadata.append(("tokenizer.ggml.token_type", .array(elementType: 5, [.i32(1), .i32(9)]))) }
                == "FILE: tokenizer.ggml.token_type missing or invalid (expected an array of token types (0 to 6))")
        #expect(try load { $0.metadata.remove(at: 11) } == "FILE: tokenizer.ggml.tokens missing or invalid (expected an array of strings)")
        #expect(try load { $0.metadata.removeLast() }
                == "FILE: tokenizer.ggml.model missing or invalid (expected a tokenizer in the GGUF metadata)")
    }
}
