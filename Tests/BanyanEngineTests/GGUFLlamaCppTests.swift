import Foundation
import Testing
import BanyanKernels
import BanyanModel
import BanyanEngine
import BanyanTokenizer
import BanyanTestSupport

/// llama.cpp run on a GGUF fixture (scripts/make_llamacpp_references.py, `NAME.llamacpp.json`): its
/// logprobs for the transformers reference's token ids, its greedy tokens, and its own error against
/// that float32 reference (max and mean |llama.cpp − transformers|).
struct LlamaCppRun: Decodable, Sendable {
    struct Greedy: Decodable, Sendable { let prompt: [Int]; let tokens: [Int]; let margins: [Double] }
    struct Errors: Decodable, Sendable {
        let target_logprobs: Double
        let target_logprobs_mean: Double
        /// The tiny fixtures (the whole last-position distribution).
        let last_logprobs: Double?
        let last_logprobs_mean: Double?
        /// SmolLM2 (the reference's top 16 at the last position).
        let last_top: Double?
        let greedy_agree: Int
        let greedy_count: Int
    }
    let input_ids: [Int]
    let target_logprobs: [Double]
    let greedy: Greedy
    let error: Errors

    static func load(_ name: String) throws -> LlamaCppRun {
        let url = FixturePaths.gguf.appendingPathComponent("\(name).llamacpp.json")
        return try JSONDecoder().decode(LlamaCppRun.self, from: Data(contentsOf: url))
    }
}

/// llama.cpp's `llama_tokenize` (add_special, parse_special) of a corpus, per GGUF file
/// (`tokenize.llamacpp.json`). A key `shared:PATH` names a file under ../shared.
struct LlamaCppTokenization: Decodable, Sendable {
    struct Case: Decodable, Sendable, CustomStringConvertible {
        let text: String
        let ids: [Int]
        var description: String { text.debugDescription }
    }
    let add_special: Bool
    let parse_special: Bool
    let files: [String: [Case]]
}

/// The GGUF fixtures that have a llama.cpp run.
let llamaCppFixtureNames: [String] = ggufFixtureNames.filter {
    FileManager.default.fileExists(atPath: FixturePaths.gguf.appendingPathComponent("\($0).llamacpp.json").path)
}

/// How close Banyan under `.fast` must be to transformers' float32 reference, given llama.cpp's own
/// error on the same file and token ids. Both engines quantize activations to 8 bits per block
/// against quantized weights (Banyan: blocks of 32 with a float32 scale; llama.cpp: Q8_0/Q8_1, blocks
/// of 32 with an f16 scale, or Q8_K, blocks of 256, against K-quants) and store K/V as f16, so their
/// errors are of one kind and size, and "no worse than llama.cpp" is the bar (issue 14).
///
/// - Last-position max |Δ| (a whole distribution, or SmolLM2's top 16) and teacher-forced mean |Δ|:
///   ≤ max(2 × llama.cpp's, floor).
/// - Teacher-forced max |Δ|: ≤ max(4 × llama.cpp's, floor). That maximum is one token at one
///   position and heavy-tailed: which way each activation rounds is a draw, and the draws of two
///   schemes differ. Modelling each scheme's rounding as random (uniform noise of one quantization
///   step) on llama-kquants, 12 draws give teacher-forced maxima from 0.12 to 1.3 for Banyan's scheme
///   and 0.23 to 2.3 for llama.cpp's coarser Q8_K, whose actual draw (0.33) is a lucky one. A numpy
///   emulation of `.fast` (float64 products of the dequantized weights with Banyan's exact activation
///   quantization and f16 K/V; it reproduces llama.cpp's per-position errors when given llama.cpp's
///   scheme) predicts, per fixture, Banyan/llama.cpp ratios of 0.4–1.4 for every measure here
///   except llama-kquants' teacher-forced maximum: 1.02 against 0.33, 3.1×, while its mean there
///   is 1.5× and its last-position maximum 1.3×. SmolLM2: 1.3× (teacher-forced max), 1.0× (mean),
///   1.2× (top 16).
/// - Floors. Maxima: 0.02, `f16KVTolerance`, the bound ConformanceTests derives for f16 K/V rounding
///   alone at these fixtures' logit scale (|z| ≈ 10). llama.cpp's error on the float fixtures is
///   mostly that rounding (llama-f32: 0.004 teacher-forced) and can be small by luck, while Banyan's
///   rounding of K/V is a different draw (emulated llama-f32: 0.005). Means: a quarter of that,
///   0.005 (a mean over positions or over the vocabulary is a fifth to two fifths of the maximum in
///   every llama.cpp run here).
enum LlamaCppBound {
    static let maxFloor = f16KVTolerance
    static let meanFloor = f16KVTolerance / 4
    static let tailFactor = 4.0
    static func of(_ llamaCpp: Double) -> Double { Swift.max(2 * llamaCpp, maxFloor) }
    static func mean(_ llamaCpp: Double) -> Double { Swift.max(2 * llamaCpp, meanFloor) }
    static func tail(_ llamaCpp: Double) -> Double { Swift.max(tailFactor * llamaCpp, maxFloor) }
}

private func meanOf(_ xs: [Double]) -> Double { xs.isEmpty ? .infinity : xs.reduce(0, +) / Double(xs.count) }

@Suite("GGUF: llama.cpp as the oracle")
struct GGUFLlamaCppTests {
    static let tokenization: LlamaCppTokenization? = {
        let url = FixturePaths.gguf.appendingPathComponent("tokenize.llamacpp.json")
        return try? JSONDecoder().decode(LlamaCppTokenization.self, from: Data(contentsOf: url))
    }()
    static let tokenizationFiles: [String] = tokenization?.files.keys.sorted() ?? []

    @Test func fixturesPresent() {
        // Every GGUF model fixture has a llama.cpp run (rerun scripts/make_llamacpp_references.py after adding one).
        #expect(llamaCppFixtureNames == ggufFixtureNames)
        #expect(!llamaCppFixtureNames.isEmpty)
        #expect(Self.tokenizationFiles == ["llama-q4_1.gguf", "shared:models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf",
                                           "spm-vocab.gguf"])
        #expect(Self.tokenization?.add_special == true && Self.tokenization?.parse_special == true)
    }

    /// Banyan's `.fast` (integer products against quantized weights, f16 K/V) against transformers'
    /// float32 run of the dequantized weights, no further from it than llama.cpp is (`LlamaCppBound`).
    @Test("Banyan .fast is no further from transformers than llama.cpp", arguments: llamaCppFixtureNames)
    func fixture(_ name: String) throws {
        let ref = try Reference.load(FixturePaths.gguf.appendingPathComponent("\(name).reference.json"))
        let cpp = try LlamaCppRun.load(name)
        #expect(cpp.input_ids == ref.input_ids)
        #expect(cpp.target_logprobs.count == ref.target_logprobs.count)
        let cppLast = try #require(cpp.error.last_logprobs)
        let engine = try makeEngine(FixturePaths.gguf.appendingPathComponent("\(name).gguf").path, precision: .fast)

        let (scores, _) = try engine.score(prompt: [ref.input_ids[0]], continuations: [Array(ref.input_ids.dropFirst())])
        #expect(scores[0].logprobs.count == ref.target_logprobs.count)
        let tf = zip(scores[0].logprobs, ref.target_logprobs).map { abs($0 - $1) }
        let last = try engine.nextTokenLogprobs(prompt: ref.input_ids)
        #expect(last.count == ref.last_logprobs.count)
        let lastErrors = zip(last, ref.last_logprobs).map { abs(Double($0) - $1) }
        let tfMax = tf.max() ?? .infinity, tfMean = meanOf(tf), lastMax = lastErrors.max() ?? .infinity

        let tfBound = LlamaCppBound.tail(cpp.error.target_logprobs)
        let meanBound = LlamaCppBound.mean(cpp.error.target_logprobs_mean)
        let lastBound = LlamaCppBound.of(cppLast)
        let setting = "(.fast, KV \(engine.kv.layout.dtype), integer products \(engine.model.usesIntegerProducts))"
        print([
            "llama.cpp oracle \(name) \(setting): ",
            "teacher-forced max Banyan \(tfMax) llama.cpp \(cpp.error.target_logprobs) (bound \(tfBound)), ",
            "mean Banyan \(tfMean) llama.cpp \(cpp.error.target_logprobs_mean) (bound \(meanBound)); ",
            "last position max Banyan \(lastMax) llama.cpp \(cppLast) (bound \(lastBound))",
        ].joined())
        #expect(tfMax <= tfBound, "\(name): teacher-forced max error \(tfMax) > \(tfBound) (llama.cpp \(cpp.error.target_logprobs))")
        #expect(tfMean <= meanBound, "\(name): teacher-forced mean error \(tfMean) > \(meanBound) (llama.cpp \(cpp.error.target_logprobs_mean))")
        #expect(lastMax <= lastBound, "\(name): last-position max error \(lastMax) > \(lastBound) (llama.cpp \(cppLast))")

        // Greedy tokens up to the first reference margin within the last-position bound (where an
        // error that size may pick the runner-up); may compare none (llama-rope-freqs' first margin is 0.015).
        let compared = try ConformanceTests().checkGreedy(ref.greedy, engine: engine, tolerance: lastBound)
        print("llama.cpp oracle \(name): greedy compared \(compared)/\(ref.greedy.tokens.count); llama.cpp's own agreed on \(cpp.error.greedy_agree)/\(cpp.error.greedy_count)")
    }

    /// The real SmolLM2 Q4_1 file (Q8_0 embeddings): the same bounds, on the reference's 18
    /// teacher-forced positions and top 16 at the last position; greedy chat answer. Skipped without ../shared.
    @Test func smolLM2() throws {
        guard let (path, ref) = try SmolLM2GGUFTests.fixture("SmolLM2 GGUF vs llama.cpp") else { return }
        let cpp = try LlamaCppRun.load("smollm2")
        #expect(cpp.input_ids == ref.input_ids)
        let cppTop = try #require(cpp.error.last_top)
        let engine = try makeEngine(path, precision: .fast)
        #expect(engine.model.usesIntegerProducts)

        let (scores, _) = try engine.score(prompt: [ref.input_ids[0]], continuations: [Array(ref.input_ids.dropFirst())])
        #expect(scores[0].logprobs.count == ref.target_logprobs.count)
        let tf = zip(scores[0].logprobs, ref.target_logprobs).map { abs($0 - $1) }
        let last = try engine.nextTokenLogprobs(prompt: ref.input_ids)
        let top = zip(ref.last_top.ids, ref.last_top.logprobs).map { abs(Double(last[$0]) - $1) }
        let tfMax = tf.max() ?? .infinity, tfMean = meanOf(tf), topMax = top.max() ?? .infinity

        let tfBound = LlamaCppBound.tail(cpp.error.target_logprobs)
        let meanBound = LlamaCppBound.mean(cpp.error.target_logprobs_mean)
        let topBound = LlamaCppBound.of(cppTop)
        print([
            "llama.cpp oracle SmolLM2 (.fast, KV \(engine.kv.layout.dtype)): ",
            "teacher-forced max Banyan \(tfMax) llama.cpp \(cpp.error.target_logprobs) (bound \(tfBound)), ",
            "mean Banyan \(tfMean) llama.cpp \(cpp.error.target_logprobs_mean) (bound \(meanBound)); ",
            "last-position top-\(top.count) max Banyan \(topMax) llama.cpp \(cppTop) (bound \(topBound))",
        ].joined())
        #expect(tfMax <= tfBound, "SmolLM2: teacher-forced max error \(tfMax) > \(tfBound)")
        #expect(tfMean <= meanBound, "SmolLM2: teacher-forced mean error \(tfMean) > \(meanBound)")
        #expect(topMax <= topBound, "SmolLM2: last-position top max error \(topMax) > \(topBound)")
        let argmax = last.indices.max { last[$0] < last[$1] }
        #expect(argmax == ref.last_top.ids[0])

        // The reference's smallest greedy margin is 0.90, above the bound (≈ 0.47): every token is compared.
        let compared = try ConformanceTests().checkGreedy(ref.greedy, engine: engine, tolerance: topBound)
        #expect(compared == ref.greedy.tokens.count)
        #expect(cpp.greedy.tokens == ref.greedy.tokens)
        print("llama.cpp oracle SmolLM2: greedy compared \(compared)/\(ref.greedy.tokens.count)")
    }

    /// Banyan's tokenizer built from the GGUF metadata gives llama.cpp's ids for every corpus text
    /// (BOS per the file's add_bos_token / vocabulary type, control tokens in the text matched whole:
    /// `encode(text, addSpecialTokens: true)`). The SmolLM2 file is skipped without ../shared.
    @Test("tokenizer from GGUF metadata matches llama_tokenize", arguments: tokenizationFiles)
    func tokenization(_ file: String) throws {
        let data = try #require(Self.tokenization)
        let cases = data.files[file] ?? []
        #expect(cases.count >= 30)
        let path: String
        if file.hasPrefix("shared:") {
            guard let shared = FixturePaths.shared else {
                print("skipping llama.cpp tokenization of \(file): ../shared absent")
                return
            }
            path = shared.appendingPathComponent(String(file.dropFirst("shared:".count))).path
        } else {
            path = FixturePaths.gguf.appendingPathComponent(file).path
        }
        let tok = try Tokenizer.load(fileOrGGUF: path)
        var mismatches: [String] = []
        for c in cases {
            let ids = tok.encode(c.text, addSpecialTokens: true)
            if ids != c.ids { mismatches.append(c.description) }
            #expect(ids == c.ids, "\(file) \(c)")
        }
        let differ = mismatches.isEmpty ? "" : "; differ: \(mismatches.joined(separator: ", "))"
        print("llama.cpp tokenization \(file): \(cases.count - mismatches.count)/\(cases.count) texts agree\(differ)")
    }
}
