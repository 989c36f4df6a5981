import Foundation
import BanyanKernels

/// Supported architectures; every variant is an `if` on resolved config in `Model.forward`.
public enum Architecture: String, Sendable, Codable {
    case llama = "LlamaForCausalLM"
    case mistral = "MistralForCausalLM"
    case qwen2 = "Qwen2ForCausalLM"
    /// Qwen2 without the q/k/v biases (unless `attention_bias`), with RMSNorm on each head's q and k.
    case qwen3 = "Qwen3ForCausalLM"
}

/// RoPE frequency scaling, resolved from either config style (`rope_scaling` or `rope_parameters`).
public enum RopeScaling: Sendable, Equatable {
    case none
    case linear(factor: Double)
    case llama3(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalMaxPositions: Int)
    /// Each inverse frequency divided by its factor (`[headDim / 2]`): GGUF's `rope_freqs.weight`, how
    /// llama.cpp's converter stores llama3 scaling.
    case frequencyFactors([Float])
}

/// A model's shape and math options, resolved once from `config.json` (HF names appear only in `init(json:)`).
public struct ModelConfig: Sendable, Equatable {
    public var architecture: Architecture
    public var hiddenSize: Int
    public var layerCount: Int
    public var headCount: Int
    public var kvHeadCount: Int
    public var headDim: Int
    public var intermediateSize: Int
    public var vocabularySize: Int
    public var maxPositionCount: Int
    public var rmsNormEpsilon: Float
    public var ropeTheta: Double
    public var ropeScaling: RopeScaling
    public var tieWordEmbeddings: Bool
    /// q/k/v projections carry a bias (Qwen2; Llama's `attention_bias`).
    public var attentionBias: Bool
    /// Each head's q and k are RMS-normalised (own weights of `headDim`) before RoPE (Qwen3).
    public var qkNorm: Bool
    /// Mistral-style sliding window; nil when attention is global.
    public var slidingWindow: Int?
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int]

    public init(architecture: Architecture, hiddenSize: Int, layerCount: Int, headCount: Int, kvHeadCount: Int,
                headDim: Int? = nil, intermediateSize: Int, vocabularySize: Int, maxPositionCount: Int,
                rmsNormEpsilon: Float = 1e-5, ropeTheta: Double = 10000, ropeScaling: RopeScaling = .none,
                tieWordEmbeddings: Bool = false, attentionBias: Bool = false, qkNorm: Bool = false, slidingWindow: Int? = nil,
                bosTokenID: Int? = 1, eosTokenIDs: [Int] = [2]) {
        self.architecture = architecture; self.hiddenSize = hiddenSize; self.layerCount = layerCount
        self.headCount = headCount; self.kvHeadCount = kvHeadCount; self.headDim = headDim ?? hiddenSize / headCount
        self.intermediateSize = intermediateSize; self.vocabularySize = vocabularySize
        self.maxPositionCount = maxPositionCount; self.rmsNormEpsilon = rmsNormEpsilon; self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling; self.tieWordEmbeddings = tieWordEmbeddings; self.attentionBias = attentionBias
        self.qkNorm = qkNorm
        self.slidingWindow = slidingWindow; self.bosTokenID = bosTokenID; self.eosTokenIDs = eosTokenIDs
    }

    /// Query heads per KV head (GQA group size; 1 for MHA).
    public var groupSize: Int { headCount / kvHeadCount }
    public var qDim: Int { headCount * headDim }
    public var kvDim: Int { kvHeadCount * headDim }

    /// Parameter count (embeddings counted once when tied).
    public var parameterCount: Int {
        let attn = hiddenSize * qDim + 2 * hiddenSize * kvDim + qDim * hiddenSize + (attentionBias ? qDim + 2 * kvDim : 0)
        let mlp = 3 * hiddenSize * intermediateSize
        let perLayer = attn + mlp + 2 * hiddenSize + (qkNorm ? 2 * headDim : 0)
        let embed = vocabularySize * hiddenSize * (tieWordEmbeddings ? 1 : 2)
        return layerCount * perLayer + embed + hiddenSize
    }

    /// Bytes of KV cache per token at `dtype` (all layers, K and V).
    public func kvBytesPerToken(dtype: DType = .f32) -> Int { layerCount * 2 * kvDim * dtype.byteCount }
}

// MARK: - config.json

extension ModelConfig {
    /// Reads and resolves `config.json`, plus `generation_config.json` (EOS ids) when present beside it.
    public static func load(folder: URL) throws -> ModelConfig {
        let url = folder.appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ModelError.io(path: url.path, message: "cannot read config.json")
        }
        var config = try ModelConfig(json: data, file: url.path)
        let genURL = folder.appendingPathComponent("generation_config.json")
        if let genData = FileManager.default.contents(atPath: genURL.path) {
            let gen = try ConfigReader(data: genData, file: genURL.path)
            if let eos = try gen.intList("eos_token_id") { config.eosTokenIDs = eos }
            if let bos = try gen.int("bos_token_id") { config.bosTokenID = bos }
        }
        return config
    }

    /// Resolves an HF `config.json` document. Unknown keys are ignored unless they change the math.
    public init(json data: Data, file: String = "config.json") throws {
        let r = try ConfigReader(data: data, file: file)
        guard let archs = try r.stringList("architectures"), let archName = archs.first else {
            throw ModelError.config(file: file, field: "architectures", message: "missing")
        }
        guard let arch = Architecture(rawValue: archName) else { throw ModelError.unsupportedArchitecture(archName, file: file) }

        let hidden = try r.requiredInt("hidden_size")
        let heads = try r.requiredInt("num_attention_heads")
        let kvHeads = try r.int("num_key_value_heads") ?? heads
        let layers = try r.requiredInt("num_hidden_layers")
        let headDim = try r.int("head_dim") ?? (hidden / max(heads, 1))
        for (name, v) in [("hidden_size", hidden), ("num_attention_heads", heads), ("num_key_value_heads", kvHeads),
                          ("num_hidden_layers", layers), ("head_dim", headDim)] where v <= 0 {
            throw ModelError.config(file: file, field: name, message: "must be positive, found \(v)")
        }
        guard heads % kvHeads == 0 else {
            throw ModelError.config(file: file, field: "num_key_value_heads",
                                    message: "\(kvHeads) does not divide num_attention_heads \(heads)")
        }
        guard headDim % 2 == 0 else {
            throw ModelError.config(file: file, field: "head_dim", message: "must be even for RoPE, found \(headDim)")
        }
        if let act = try r.string("hidden_act"), act != "silu" {
            throw ModelError.config(file: file, field: "hidden_act", message: "\"\(act)\" unsupported (silu)")
        }
        if try r.bool("mlp_bias") == true {
            throw ModelError.config(file: file, field: "mlp_bias", message: "true unsupported")
        }
        if let tp = try r.int("pretraining_tp"), tp != 1 {
            throw ModelError.config(file: file, field: "pretraining_tp", message: "\(tp) unsupported (1)")
        }

        // RoPE: classic style (`rope_theta` + `rope_scaling`) or transformers-5 style (`rope_parameters`).
        var theta = try r.double("rope_theta") ?? 10000
        var scaling = RopeScaling.none
        let ropeKey = r.object("rope_parameters") != nil ? "rope_parameters" : "rope_scaling"
        if let rope = r.object(ropeKey) {
            let rr = ConfigReader(dict: rope, file: file, prefix: ropeKey + ".")
            if let t = try rr.double("rope_theta") { theta = t }
            let type = try rr.string("rope_type") ?? rr.string("type") ?? "default"
            switch type {
            case "default": scaling = .none
            case "linear": scaling = .linear(factor: try rr.requiredDouble("factor"))
            case "llama3":
                scaling = .llama3(factor: try rr.requiredDouble("factor"),
                                  lowFrequencyFactor: try rr.requiredDouble("low_freq_factor"),
                                  highFrequencyFactor: try rr.requiredDouble("high_freq_factor"),
                                  originalMaxPositions: try rr.requiredInt("original_max_position_embeddings"))
            default:
                throw ModelError.config(file: file, field: ropeKey + ".rope_type",
                                        message: "\"\(type)\" unsupported (default, linear, llama3)")
            }
            if case .linear(let f) = scaling, f <= 0 {
                throw ModelError.config(file: file, field: ropeKey + ".factor", message: "must be positive")
            }
        }

        var window: Int? = nil
        switch arch {
        case .mistral:
            window = try r.int("sliding_window")
        case .qwen2, .qwen3:
            if try r.bool("use_sliding_window") == true { window = try r.int("sliding_window") }
        case .llama: break
        }
        let bias: Bool = arch == .qwen2 ? true : (try r.bool("attention_bias") ?? false)

        self.init(architecture: arch, hiddenSize: hidden, layerCount: layers, headCount: heads, kvHeadCount: kvHeads,
                  headDim: headDim, intermediateSize: try r.requiredInt("intermediate_size"),
                  vocabularySize: try r.requiredInt("vocab_size"),
                  maxPositionCount: try r.int("max_position_embeddings") ?? 2048,
                  rmsNormEpsilon: Float(try r.double("rms_norm_eps") ?? 1e-6), ropeTheta: theta, ropeScaling: scaling,
                  tieWordEmbeddings: try r.bool("tie_word_embeddings") ?? false, attentionBias: bias,
                  qkNorm: arch == .qwen3, slidingWindow: window, bosTokenID: try r.int("bos_token_id"),
                  eosTokenIDs: try r.intList("eos_token_id") ?? [])
    }
}

/// Typed access to a JSON object with errors naming the file and the field path.
struct ConfigReader {
    let dict: [String: JSONValue]
    let file: String
    let prefix: String

    init(data: Data, file: String) throws {
        guard let obj = JSONValue.parse(data)?.objectValue else {
            throw ModelError.config(file: file, field: "(document)", message: "not a valid JSON object")
        }
        self.init(dict: obj, file: file, prefix: "")
    }
    init(dict: [String: JSONValue], file: String, prefix: String) { self.dict = dict; self.file = file; self.prefix = prefix }

    private func fail(_ key: String, _ expected: String, _ value: JSONValue) -> ModelError {
        .config(file: file, field: prefix + key, message: "expected \(expected), found \(value.brief)")
    }
    private func value(_ key: String) -> JSONValue? {
        guard let v = dict[key], v != .null else { return nil }
        return v
    }
    private func missing(_ key: String) -> ModelError { .config(file: file, field: prefix + key, message: "missing") }

    func object(_ key: String) -> [String: JSONValue]? { value(key)?.objectValue }

    func int(_ key: String) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = v.intValue else { throw fail(key, "an integer", v) }
        return i
    }
    func requiredInt(_ key: String) throws -> Int {
        guard let v = try int(key) else { throw missing(key) }
        return v
    }
    func double(_ key: String) throws -> Double? {
        guard let v = value(key) else { return nil }
        guard let d = v.doubleValue else { throw fail(key, "a number", v) }
        return d
    }
    func requiredDouble(_ key: String) throws -> Double {
        guard let v = try double(key) else { throw missing(key) }
        return v
    }
    func bool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard let b = v.boolValue else { throw fail(key, "true or false", v) }
        return b
    }
    func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.stringValue else { throw fail(key, "a string", v) }
        return s
    }
    func stringList(_ key: String) throws -> [String]? {
        guard let v = value(key) else { return nil }
        guard let a = v.arrayValue, case let strings = a.compactMap(\.stringValue), strings.count == a.count else {
            throw fail(key, "a list of strings", v)
        }
        return strings
    }
    /// An integer or a list of integers (as `eos_token_id` may be).
    func intList(_ key: String) throws -> [Int]? {
        guard let v = value(key) else { return nil }
        if let i = v.intValue { return [i] }
        guard let a = v.arrayValue, case let ints = a.compactMap(\.intValue), ints.count == a.count else {
            throw fail(key, "an integer or a list of integers", v)
        }
        return ints
    }
}
