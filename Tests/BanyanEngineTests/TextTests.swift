import Foundation
import Testing
import BanyanKernels
import BanyanModel
import BanyanTokenizer
import BanyanEngine
import BanyanTestSupport

/// `llama-text/reference.json`'s "text" section: transformers' `AutoTokenizer` ids of a prompt and
/// the model's greedy continuation, decoded by the same tokenizer (scripts/make_fixtures.py).
struct TextReference: Decodable {
    let prompt: String
    let prompt_ids: [Int]
    let plain_prompt_ids: [Int]
    let greedy_ids: [Int]
    let greedy_text: String
    let margins: [Double]

    static let folder = FixturePaths.models.appendingPathComponent("llama-text")

    static func load() throws -> TextReference {
        struct File: Decodable { let text: TextReference }
        let url = folder.appendingPathComponent("reference.json")
        return try JSONDecoder().decode(File.self, from: Data(contentsOf: url)).text
    }

    /// Greedy steps before the first whose top-2 margin is within float32 noise: past it a different,
    /// equally valid argmax may be picked. 1e-4 is the float32 logprob tolerance of ConformanceTests.
    var trustedCount: Int { margins.firstIndex { $0 <= 1e-4 } ?? greedy_ids.count }
}

/// Text in, text out on a tiny checkpoint with a real byte-level BPE tokenizer.json, against transformers.
@Suite("Text prompts, decoding and stop strings")
struct TextTests {
    let reference: TextReference
    let engine: Engine

    init() throws {
        reference = try TextReference.load()
        let pool = ThreadPool(threadCount: 1)
        var options = EngineOptions()
        options.maxKVBytes = 1 << 26
        let folder = TextReference.folder.path
        engine = try Engine(model: try Model.load(folder, threads: pool), tokenizer: try Tokenizer.load(path: folder),
                            threads: pool, options: options)
    }

    func greedy(stop: [String] = []) throws -> Completion {
        var request = Request(prompt: try engine.encodePrompt(reference.prompt))
        request.maxTokens = reference.greedy_ids.count
        request.sampling.temperature = 0
        request.ignoreEOS = true
        request.stopStrings = stop
        return try engine.generate(request).completions[0]
    }

    @Test func tokenizerCoversTheVocabulary() throws {
        let tok = try #require(engine.tokenizer)
        #expect(tok.vocabularySize == engine.config.vocabularySize)
        #expect(tok.bosTokenID == 1 && engine.config.bosTokenID == 1)
    }

    @Test func encodePromptMatchesAutoTokenizer() throws {
        #expect(reference.prompt_ids.first == 1, "the reference prompt starts with BOS")
        #expect(try engine.encodePrompt(reference.prompt) == reference.prompt_ids)
        let tok = try #require(engine.tokenizer)
        #expect(tok.encode(reference.prompt) == reference.plain_prompt_ids)
    }

    @Test func greedyTokensAndText() throws {
        let c = try greedy()
        let trusted = reference.trustedCount
        #expect(trusted > 0)
        #expect(Array(c.tokens.prefix(trusted)) == Array(reference.greedy_ids.prefix(trusted)))
        #expect(c.finishReason == .length)
        if trusted == reference.greedy_ids.count {
            #expect(c.tokens.count == reference.greedy_ids.count)
            #expect(c.text == reference.greedy_text)
        }
        #expect(try engine.tokenizer?.decode(reference.greedy_ids) == reference.greedy_text)
    }

    /// The decoded text of each greedy token; the fixture's text is printable ASCII, so they concatenate
    /// to `greedy_text` and character offsets are token-boundary offsets.
    func pieces() throws -> [String] {
        let tok = try #require(engine.tokenizer)
        let pieces = try reference.greedy_ids.map { try tok.decode([$0]) }
        try #require(pieces.joined() == reference.greedy_text, "\(pieces)")
        return pieces
    }

    /// A substring of `greedy_text` from the second character of a multi-character token to the second
    /// character of a later one (at least `gap` tokens on): it starts and ends inside tokens and
    /// crosses every boundary between them.
    func crossingStop(gap: Int) throws -> String? {
        let p = try pieces()
        let multi = p.indices.filter { p[$0].count >= 2 }
        for i in multi {
            guard let j = multi.first(where: { $0 >= i + gap }) else { continue }
            let start = p[..<i].reduce(0) { $0 + $1.count } + 1
            let end = p[..<j].reduce(0) { $0 + $1.count } + 1
            let text = Array(reference.greedy_text)
            return String(text[start..<end])
        }
        return nil
    }

    @Test(arguments: [1, 2]) func stopStringAcrossTokens(gap: Int) throws {
        try #require(reference.trustedCount == reference.greedy_ids.count, "greedy reference has a near-tie")
        let stop = try #require(try crossingStop(gap: gap), "no multi-character tokens \(gap) apart in \(reference.greedy_text)")
        let cut = try #require(reference.greedy_text.range(of: stop)).lowerBound
        let c = try greedy(stop: [stop])
        #expect(c.finishReason == .stop, "stop \(stop.debugDescription)")
        #expect(c.text == String(reference.greedy_text[..<cut]), "stop \(stop.debugDescription)")
        // Generation ends on the token that completes the first match; no further tokens are kept.
        let needed = try pieces().indices.first { i in
            try pieces()[...i].joined().contains(stop)
        }
        #expect(c.tokens == Array(reference.greedy_ids.prefix(try #require(needed) + 1)))
    }

    @Test func stopStringNeverProducedChangesNothing() throws {
        let stop = "Riding Hood"
        try #require(!reference.greedy_text.contains(stop))
        let plain = try greedy(), stopped = try greedy(stop: [stop, "\u{1F333}"])
        #expect(stopped.finishReason == .length)
        #expect(stopped.tokens == plain.tokens)
        #expect(stopped.text == plain.text)
        #expect(stopped.logprobs == plain.logprobs)
    }
}
