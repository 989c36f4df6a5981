import Foundation
import Testing
import BanyanTestSupport

/// `Tests/Fixtures/models/llama-text`: a tiny Llama with a byte-level BPE tokenizer.json, and the
/// "text" section of its reference.json (transformers' AutoTokenizer ids, greedy text).
struct TextFixture {
    static let folder = FixturePaths.models.appendingPathComponent("llama-text").path

    var prompt: String
    var promptIDs: [Int]
    var plainPromptIDs: [Int]
    var promptIDsDecoded: String
    var greedyIDs: [Int]
    var greedyText: String
    var margins: [Double]

    static func load() throws -> TextFixture {
        let url = URL(fileURLWithPath: folder).appendingPathComponent("reference.json")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let text = try #require(json["text"] as? [String: Any])
        return TextFixture(prompt: try #require(text["prompt"] as? String),
                           promptIDs: try #require(text["prompt_ids"] as? [Int]),
                           plainPromptIDs: try #require(text["plain_prompt_ids"] as? [Int]),
                           promptIDsDecoded: try #require(text["prompt_ids_decoded"] as? String),
                           greedyIDs: try #require(text["greedy_ids"] as? [Int]),
                           greedyText: try #require(text["greedy_text"] as? String),
                           margins: try #require(text["margins"] as? [Double]))
    }
}

/// `generate`, `tokenize` and `detokenize` with a text prompt, against transformers.
@Suite struct TextCLITests {
    let reference: TextFixture
    init() throws { reference = try TextFixture.load() }

    @Test func generateTextPrompt() throws {
        // Every greedy margin is far above float32 noise (make_fixtures.py checks > 0.01), so the text is exact.
        try #require(reference.margins.allSatisfy { $0 > 1e-4 })
        let out = try BanyanBinary.json("generate", ["--model", TextFixture.folder, "--prompt", reference.prompt,
                                                     "--max-tokens", String(reference.greedyIDs.count), "--temperature", "0",
                                                     "--ignore-eos"])
        let c = try #require((out["completions"] as? [[String: Any]])?.first)
        #expect(c["tokens"] as? [Int] == reference.greedyIDs)
        #expect(c["text"] as? String == reference.greedyText)
        #expect(c["finish_reason"] as? String == "length")
        let usage = try #require(out["usage"] as? [String: Any])
        #expect(usage["prompt_tokens"] as? Int == reference.promptIDs.count)
    }

    @Test func tokenize() throws {
        let args = ["--tokenizer", TextFixture.folder, "--text", reference.prompt, "--json"]
        let plain = try BanyanBinary.run(["tokenize"] + args)
        #expect(plain.status == 0 && plain.stdout == "{\"ids\":[\(idList(reference.plainPromptIDs))]}\n", "\(plain)")
        let special = try BanyanBinary.run(["tokenize"] + args + ["--add-special-tokens"])
        #expect(special.status == 0 && special.stdout == "{\"ids\":[\(idList(reference.promptIDs))]}\n", "\(special)")
        // The same text on standard input.
        let piped = try BanyanBinary.run(["tokenize", "--tokenizer", TextFixture.folder, "--json"], input: Data(reference.prompt.utf8))
        #expect(piped.status == 0 && piped.stdout == plain.stdout, "\(piped)")
    }

    @Test(arguments: [0, 1]) func detokenize(_ which: Int) throws {
        let (ids, text) = which == 0 ? (reference.greedyIDs, reference.greedyText) : (reference.promptIDs, reference.promptIDsDecoded)
        let r = try BanyanBinary.run(["detokenize", "--tokenizer", TextFixture.folder, "--ids", idList(ids), "--json"])
        try #require(r.status == 0 && !r.crashed, "\(r)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r)")
        #expect(object.keys.sorted() == ["text"])
        #expect(object["text"] as? String == text)
    }

    /// Standard input that is not UTF-8 (a lone continuation byte, a truncated 3-byte sequence) is refused
    /// with one error line, not replaced.
    @Test(arguments: [[0x61, 0x80, 0x62], [0x4F, 0x6E, 0xE2, 0x82]] as [[UInt8]])
    func tokenizeInvalidUTF8(_ bytes: [UInt8]) throws {
        let r = try BanyanBinary.run(["tokenize", "--tokenizer", TextFixture.folder, "--json"], input: Data(bytes))
        #expect(r.status != 0 && !r.crashed, "\(r)")
        #expect(r.stdout == "", "\(r)")
        #expect(r.stderr.hasPrefix("Error: ") && r.stderr.hasSuffix("\n")
                && r.stderr.dropLast().split(separator: "\n", omittingEmptySubsequences: false).count == 1, "\(r)")
    }
}
