import Foundation
import Testing
import BanyanKernels
import BanyanModel
import BanyanTestSupport

/// Fixture checkpoints load to the config their `config.json` describes, with the tensors their files hold.
@Suite struct ModelLoadingTests {
    static let llama3Rope = RopeScaling.llama3(factor: 8, lowFrequencyFactor: 1, highFrequencyFactor: 4, originalMaxPositions: 64)

    /// Every fixture's resolved config, written out from its config.json (and generation_config.json).
    static let expectedConfigs: [String: ModelConfig] = [
        "llama-bf16-mha-tied": ModelConfig(architecture: .llama, hiddenSize: 64, layerCount: 2, headCount: 4, kvHeadCount: 4, headDim: 16,
                                           intermediateSize: 128, vocabularySize: 112, maxPositionCount: 256, tieWordEmbeddings: true),
        "llama-f16-headdim": ModelConfig(architecture: .llama, hiddenSize: 64, layerCount: 2, headCount: 4, kvHeadCount: 2, headDim: 32,
                                         intermediateSize: 112, vocabularySize: 104, maxPositionCount: 256),
        // generation_config.json's eos_token_id [2, 3] replaces config.json's 2.
        "llama-f32-gqa": ModelConfig(architecture: .llama, hiddenSize: 64, layerCount: 2, headCount: 8, kvHeadCount: 2, headDim: 8,
                                     intermediateSize: 96, vocabularySize: 96, maxPositionCount: 256, eosTokenIDs: [2, 3]),
        "llama-f32-sharded": ModelConfig(architecture: .llama, hiddenSize: 64, layerCount: 2, headCount: 4, kvHeadCount: 2, headDim: 16,
                                         intermediateSize: 96, vocabularySize: 96, maxPositionCount: 256),
        "llama-rope-linear": ModelConfig(architecture: .llama, hiddenSize: 64, layerCount: 2, headCount: 4, kvHeadCount: 2, headDim: 16,
                                         intermediateSize: 96, vocabularySize: 96, maxPositionCount: 256, ropeScaling: .linear(factor: 2)),
        "llama-rope-llama3": ModelConfig(architecture: .llama, hiddenSize: 64, layerCount: 2, headCount: 4, kvHeadCount: 2, headDim: 16,
                                         intermediateSize: 96, vocabularySize: 96, maxPositionCount: 256, ropeTheta: 500_000,
                                         ropeScaling: llama3Rope),
        "llama-rope-llama3-params": ModelConfig(architecture: .llama, hiddenSize: 64, layerCount: 2, headCount: 4, kvHeadCount: 1, headDim: 16,
                                                intermediateSize: 96, vocabularySize: 100, maxPositionCount: 256, ropeTheta: 500_000,
                                                ropeScaling: llama3Rope),
        "mistral-f32": ModelConfig(architecture: .mistral, hiddenSize: 64, layerCount: 2, headCount: 8, kvHeadCount: 2, headDim: 8,
                                   intermediateSize: 96, vocabularySize: 96, maxPositionCount: 256),
        "mistral-sliding-short": ModelConfig(architecture: .mistral, hiddenSize: 64, layerCount: 2, headCount: 4, kvHeadCount: 2, headDim: 16,
                                             intermediateSize: 96, vocabularySize: 96, maxPositionCount: 256, slidingWindow: 16),
        "qwen2-bf16": ModelConfig(architecture: .qwen2, hiddenSize: 64, layerCount: 2, headCount: 4, kvHeadCount: 2, headDim: 16,
                                  intermediateSize: 128, vocabularySize: 120, maxPositionCount: 256, rmsNormEpsilon: 1e-6,
                                  ropeTheta: 1_000_000, tieWordEmbeddings: true, attentionBias: true),
    ]

    static let fixtureNames = expectedConfigs.keys.sorted()

    @Test(arguments: fixtureNames)
    func fixtureConfig(_ fixture: String) throws {
        let config = try ModelConfig.load(folder: FixturePaths.models.appendingPathComponent(fixture))
        #expect(config == Self.expectedConfigs[fixture])
    }

    /// Every tensor a fixture's files hold ends up in the loaded model, element for element (read back
    /// by an independent safetensors reader), from the shard the index names.
    @Test(arguments: fixtureNames)
    func fixtureWeights(_ fixture: String) throws {
        let folder = FixturePaths.models.appendingPathComponent(fixture)
        let model = try Model.load(folder.path, threads: ThreadPool(threadCount: 1))
        let c = model.config, w = model.weights
        #expect(model.folder == folder)

        // Tensor name → file holding it, from the index when sharded.
        var files: [String: String] = [:]
        let index = folder.appendingPathComponent("model.safetensors.index.json")
        if FileManager.default.fileExists(atPath: index.path) {
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: index)) as? [String: Any]
            for (name, shard) in try #require(json?["weight_map"] as? [String: String]) { files[name] = shard }
            #expect(Set(files.values).count == 3)
        } else {
            for name in try SafeTensorsImage(contentsOf: folder.appendingPathComponent("model.safetensors")).tensorNames {
                files[name] = "model.safetensors"
            }
        }
        var images: [String: SafeTensorsImage] = [:]
        for file in Set(files.values) { images[file] = try SafeTensorsImage(contentsOf: folder.appendingPathComponent(file)) }
        func stored(_ name: String) throws -> [Float] {
            let file = try #require(files[name], "\(name) in \(fixture)")
            return try #require(images[file]).floats(name)
        }
        func elements(_ m: WeightMatrix) -> [Float] {
            (0..<m.rows).flatMap { r in (0..<m.cols).map { m.element(r, $0) } }
        }

        let dtypes = Set(images.values.flatMap { image in image.tensorNames.map(image.dtype) })
        #expect(dtypes == [w.dtype.rawValue.uppercased()])  // f32 → F32, bf16 → BF16
        #expect(elements(w.embedding) == (try stored("model.embed_tokens.weight")))
        #expect(w.finalNorm == (try stored("model.norm.weight")))
        if c.tieWordEmbeddings {
            #expect(w.lmHead.base == w.embedding.base)
            #expect(files["lm_head.weight"] == nil)
        } else {
            #expect(elements(w.lmHead) == (try stored("lm_head.weight")))
        }
        try #require(w.layers.count == c.layerCount)
        for (i, layer) in w.layers.enumerated() {
            let p = "model.layers.\(i)."
            let matrices = [("self_attn.q_proj", layer.wq), ("self_attn.k_proj", layer.wk), ("self_attn.v_proj", layer.wv),
                            ("self_attn.o_proj", layer.wo), ("mlp.gate_proj", layer.wGate), ("mlp.up_proj", layer.wUp),
                            ("mlp.down_proj", layer.wDown)]
            for (name, m) in matrices {
                #expect(elements(m) == (try stored(p + name + ".weight")), "\(fixture) \(p)\(name)")
            }
            #expect(layer.attentionNorm == (try stored(p + "input_layernorm.weight")))
            #expect(layer.mlpNorm == (try stored(p + "post_attention_layernorm.weight")))
            if c.attentionBias {
                #expect(layer.bq == (try stored(p + "self_attn.q_proj.bias")))
                #expect(layer.bk == (try stored(p + "self_attn.k_proj.bias")))
                #expect(layer.bv == (try stored(p + "self_attn.v_proj.bias")))
            } else {
                #expect(layer.bq == nil && layer.bk == nil && layer.bv == nil)
            }
        }
    }

    /// transformers 5 writes `rope_parameters` (theta inside); older configs `rope_theta` + `rope_scaling`.
    /// Both fixtures and a converted document resolve to the same RoPE.
    @Test func ropeConfigStylesAgree() throws {
        let classic = try ModelConfig.load(folder: FixturePaths.models.appendingPathComponent("llama-rope-llama3"))
        let params = try ModelConfig.load(folder: FixturePaths.models.appendingPathComponent("llama-rope-llama3-params"))
        #expect(classic.ropeScaling == Self.llama3Rope && params.ropeScaling == Self.llama3Rope)
        #expect(classic.ropeTheta == 500_000 && params.ropeTheta == 500_000)

        let url = FixturePaths.models.appendingPathComponent("llama-rope-llama3/config.json")
        var json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var rope = try #require(json["rope_scaling"] as? [String: Any])
        rope["rope_theta"] = json["rope_theta"]
        json["rope_parameters"] = rope
        json["rope_scaling"] = nil
        json["rope_theta"] = nil
        let converted = try ModelConfig(json: JSONSerialization.data(withJSONObject: json))
        var expected = classic
        expected.eosTokenIDs = [2]  // generation_config.json is not read by init(json:); config.json says 2 too
        #expect(converted == expected)
    }

    /// `rope_scaling.type` (older key) and `rope_type` mean the same.
    @Test(arguments: ["type", "rope_type"])
    func ropeTypeKeys(_ key: String) throws {
        let json = #"{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 96, "vocab_size": 96, "rope_scaling": {"\#(key)": "linear", "factor": 2.5}}"#
        #expect(try ModelConfig(json: Data(json.utf8)).ropeScaling == .linear(factor: 2.5))
    }

    /// Qwen2 always carries q/k/v biases; it uses a sliding window only when `use_sliding_window` says so.
    @Test(arguments: [false, true])
    func qwen2SlidingWindowFlag(_ use: Bool) throws {
        let json = #"{"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 96, "vocab_size": 96, "sliding_window": 32, "use_sliding_window": \#(use)}"#
        let config = try ModelConfig(json: Data(json.utf8))
        #expect(config.attentionBias)
        #expect(config.slidingWindow == (use ? 32 : nil))
    }

    @Test func builtinStories() throws {
        let model = try Model.load("builtin:stories260k", threads: ThreadPool(threadCount: 1))
        #expect(model.config == ModelConfig(architecture: .llama, hiddenSize: 64, layerCount: 5, headCount: 8, kvHeadCount: 4,
                                            headDim: 8, intermediateSize: 172, vocabularySize: 512, maxPositionCount: 512,
                                            tieWordEmbeddings: true))
        #expect(model.weights.lmHead.base == model.weights.embedding.base)
        // Tied: the embedding's 512 × 64 float32s are counted once.
        #expect(model.weights.byteCount == model.config.parameterCount * 4)
        #expect(model.config.parameterCount == 260_032)
    }
}
