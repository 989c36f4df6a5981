import Foundation
import Testing
import BanyanKernels
import BanyanModel
import BanyanTestSupport

/// Loading a broken checkpoint throws a `ModelError` whose one-line description names the file and the problem.
@Suite struct BrokenCheckpointTests {
    @Test(arguments: BrokenCheckpoint.all)
    func modelLoadThrows(_ broken: BrokenCheckpoint) throws {
        let folder = try TemporaryFolder()
        let model = try broken.make(in: folder)
        let error = #expect(throws: ModelError.self) { try Model.load(model, threads: ThreadPool(threadCount: 1)) }
        let message = try #require(error).description
        let expected = try broken.expected(model)
        #expect(expected.matches(message), "expected: \(expected)\nfound:    \(message)")
    }

    /// Field errors through `ModelConfig(json:file:)` name the given file and the field path.
    struct ConfigCase: Sendable, CustomStringConvertible {
        var description: String { json }
        var json: String
        var message: String
    }

    static let base = #""architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 96, "vocab_size": 96"#

    static let configCases: [ConfigCase] = [
        ConfigCase(json: "", message: "(document): not a valid JSON object"),
        ConfigCase(json: "\"LlamaForCausalLM\"", message: "(document): not a valid JSON object"),
        ConfigCase(json: #"{"hidden_size": 64}"#, message: "architectures: missing"),
        ConfigCase(json: #"{"architectures": "LlamaForCausalLM"}"#, message: "architectures: expected a list of strings, found \"LlamaForCausalLM\""),
        ConfigCase(json: #"{"architectures": []}"#, message: "architectures: missing"),
        ConfigCase(json: #"{"architectures": ["LlamaForCausalLM"], "hidden_size": "abc"}"#,
                   message: "hidden_size: expected an integer, found \"abc\""),
        ConfigCase(json: "{\(base), \"rms_norm_eps\": \"small\"}", message: "rms_norm_eps: expected a number, found \"small\""),
        ConfigCase(json: "{\(base), \"head_dim\": 15}", message: "head_dim: must be even for RoPE, found 15"),
        ConfigCase(json: "{\(base), \"head_dim\": 0}", message: "head_dim: must be positive, found 0"),
        ConfigCase(json: "{\(base), \"mlp_bias\": true}", message: "mlp_bias: true unsupported"),
        ConfigCase(json: "{\(base), \"pretraining_tp\": 2}", message: "pretraining_tp: 2 unsupported (1)"),
        ConfigCase(json: "{\(base), \"eos_token_id\": [2, \"x\"]}", message: "eos_token_id: expected an integer or a list of integers, found a list"),
        ConfigCase(json: "{\(base), \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}",
                   message: "rope_scaling.rope_type: \"yarn\" unsupported (default, linear, llama3)"),
        ConfigCase(json: "{\(base), \"rope_scaling\": {\"rope_type\": \"dynamic\", \"factor\": 4.0}}",
                   message: "rope_scaling.rope_type: \"dynamic\" unsupported (default, linear, llama3)"),
        ConfigCase(json: "{\(base), \"rope_parameters\": {\"rope_type\": \"linear\"}}", message: "rope_parameters.factor: missing"),
        ConfigCase(json: "{\(base), \"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 0}}",
                   message: "rope_parameters.factor: must be positive"),
        ConfigCase(json: "{\(base), \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": \"big\"}}",
                   message: "rope_parameters.rope_theta: expected a number, found \"big\""),
    ]

    @Test(arguments: configCases)
    func configFieldError(_ c: ConfigCase) throws {
        let error = #expect(throws: ModelError.self) { try ModelConfig(json: Data(c.json.utf8), file: "/models/x/config.json") }
        #expect(try #require(error).description == "/models/x/config.json: \(c.message)")
    }

    @Test func unknownArchitectureNamesIt() throws {
        let json = Self.base.replacingOccurrences(of: "LlamaForCausalLM", with: "GPT2LMHeadModel")
        let error = #expect(throws: ModelError.self) { try ModelConfig(json: Data("{\(json)}".utf8)) }
        #expect(try #require(error).description
                == "config.json: architecture \"GPT2LMHeadModel\" unsupported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)")
    }

    @Test func unknownModelSpecs() throws {
        let pool = ThreadPool(threadCount: 1)
        let builtin = #expect(throws: ModelError.self) { try Model.load("builtin:stories15m", threads: pool) }
        #expect(try #require(builtin).description == "--model builtin:stories15m: unknown built-in model (builtin:stories260k)")
        let synthetic = #expect(throws: ModelError.self) { try Model.load("synthetic:nope", threads: pool) }
        #expect(try #require(synthetic).description
                == "synthetic model \"nope\" unknown (known: \(SyntheticModels.shapes.keys.sorted().joined(separator: ", ")))")
        let dtype = #expect(throws: ModelError.self) { try Model.load("synthetic:tiny:f64", threads: pool) }
        #expect(try #require(dtype).description == "--model synthetic:tiny:f64: unknown type 'f64' (expected f32|f16|bf16|q8_0|q4_0|q5_0|q4_k|q6_k)")
        let extra = #expect(throws: ModelError.self) { try Model.load("synthetic:tiny:q8_0:x", threads: pool) }
        #expect(try #require(extra).description == "--model synthetic:tiny:q8_0:x: expected synthetic:NAME or synthetic:NAME:f32|f16|bf16|q8_0|q4_0|q5_0|q4_k|q6_k")
        let requantize = #expect(throws: ModelError.self) {
            try Model.load(FixturePaths.gguf.appendingPathComponent("llama-q4_0.gguf").path, threads: pool, quantize: .q8_0)
        }
        #expect(try #require(requantize).description.contains("is already quantized (Q4_0); --quantize applies to float weights"))
    }
}
