import Foundation
import Testing
import BanyanKernels
import BanyanModel
import BanyanEngine
import BanyanTokenizer
import BanyanTestSupport

/// The GGUF fixtures (scripts/make_gguf_fixtures.py) against transformers loading the same files.
let ggufFixtureNames: [String] = {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: FixturePaths.gguf.path)) ?? []
    return names.filter { $0.hasSuffix(".reference.json") }.map { String($0.dropLast(".reference.json".count)) }.sorted()
}()

@Suite("GGUF conformance with transformers")
struct GGUFConformanceTests {
    /// transformers dequantizes with gguf-py into float32 and Banyan's dequantizers are bit-identical
    /// to gguf-py's (GGUFTests), so both sides run the same float32 weights and differ only in
    /// summation order, as the safetensors float32 fixtures do: the same 1e-4 applies
    /// (`tolerance(dtype: "float32")`).
    @Test("teacher-forced logprobs, last distribution and greedy tokens match", arguments: ggufFixtureNames)
    func fixture(_ name: String) throws {
        let ref = try Reference.load(FixturePaths.gguf.appendingPathComponent("\(name).reference.json"))
        #expect(ref.dtype == "float32")
        let engine = try makeEngine(FixturePaths.gguf.appendingPathComponent("\(name).gguf").path)
        try ConformanceTests().check(ref, engine: engine, label: "gguf \(name)")
    }

    @Test func fixturesPresent() {
        #expect(ggufFixtureNames.count == 11)
    }
}

/// transformers' outputs for the real SmolLM2-135M-Instruct Q4_1 file (scripts/make_gguf_fixtures.py).
struct SmolLM2Reference: Decodable {
    struct Top: Decodable { let ids: [Int]; let logprobs: [Double] }
    let input_ids: [Int]
    let target_logprobs: [Double]
    let last_top: Top
    let greedy: Reference.Greedy
    let greedy_text: String
    let chat: String
    let tokenizer_cases: [TokenizerCase]
}

@Suite("SmolLM2 GGUF (../shared)")
struct SmolLM2GGUFTests {
    /// The real file: 30 layers of Q4_1 widened to float32, against transformers' float32 run of the
    /// same dequantized weights. Only summation order differs, but through 30 layers and a 49152-way
    /// softmax: 1e-3. Greedy tokens are compared up to the first step whose reference margin is
    /// within that tolerance (none here: the smallest margin is 0.9).
    /// The file under ../shared and its reference, or nil (printing why the test is skipped).
    static func fixture(_ test: String) throws -> (path: String, reference: SmolLM2Reference)? {
        guard let shared = FixturePaths.shared else {
            print("skipping \(test): ../shared absent")
            return nil
        }
        let url = FixturePaths.fixtures.appendingPathComponent("smollm2_gguf_reference.json")
        return (shared.appendingPathComponent("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf").path,
                try JSONDecoder().decode(SmolLM2Reference.self, from: Data(contentsOf: url)))
    }

    @Test func matchesTransformers() throws {
        guard let (path, ref) = try Self.fixture("SmolLM2 GGUF") else { return }
        let engine = try makeEngine(path)
        let c = engine.model.config
        #expect(c == ModelConfig(architecture: .llama, hiddenSize: 576, layerCount: 30, headCount: 9, kvHeadCount: 3, headDim: 64,
                                 intermediateSize: 1536, vocabularySize: 49152, maxPositionCount: 8192, rmsNormEpsilon: 1e-5,
                                 ropeTheta: 100_000, tieWordEmbeddings: true, bosTokenID: 1, eosTokenIDs: [2]))
        #expect(engine.model.weights.layers[0].wq.quantized?.type == .q4_1 && engine.model.weights.embedding.quantized?.type == .q8_0)
        let tol = 1e-3

        let (scores, _) = try engine.score(prompt: [ref.input_ids[0]], continuations: [Array(ref.input_ids.dropFirst())])
        let worst = zip(scores[0].logprobs, ref.target_logprobs).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worst <= tol, "teacher-forced logprob max error \(worst) > \(tol)")

        let last = try engine.nextTokenLogprobs(prompt: ref.input_ids)
        let worstTop = zip(ref.last_top.ids, ref.last_top.logprobs).map { abs(Double(last[$0]) - $1) }.max() ?? .infinity
        #expect(worstTop <= tol, "last-position top-\(ref.last_top.ids.count) logprob max error \(worstTop) > \(tol)")
        let argmax = last.indices.max { last[$0] < last[$1] }
        #expect(argmax == ref.last_top.ids[0])
        print("SmolLM2 GGUF: max |Δ logprob| teacher-forced \(worst), last-position top \(worstTop)")

        #expect(try ConformanceTests().checkGreedy(ref.greedy, engine: engine, tolerance: tol) == ref.greedy.tokens.count)
    }

    /// Text in, text out with the tokenizer from the file's metadata: the ChatML prompt encodes to
    /// transformers' ids (no BOS: add_bos_token is false) and the greedy answer stops at <|im_end|>.
    @Test func chatText() throws {
        guard let (path, ref) = try Self.fixture("SmolLM2 GGUF chat") else { return }
        let pool = ThreadPool(threadCount: 2)
        let model = try Model.load(path, threads: pool)
        let gguf = try #require(model.gguf)
        let engine = try Engine(model: model, tokenizer: try Tokenizer.load(gguf: gguf), threads: pool)
        let prompt = try engine.encodePrompt(ref.chat)
        #expect(prompt == ref.greedy.prompt)
        var request = Request(prompt: prompt)
        request.maxTokens = 16
        request.sampling.temperature = 0
        let completion = try engine.generate(request).completions[0]
        #expect(completion.text == "The capital of France is Paris.")
    }
}
