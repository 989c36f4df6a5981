import Foundation

/// The message a broken checkpoint must produce: exact, or (where the library's choice among several
/// equally broken tensors is unspecified) a fixed beginning and end.
public enum ExpectedMessage: Sendable, CustomStringConvertible {
    case exact(String)
    case pattern(prefix: String, suffix: String)

    public func matches(_ message: String) -> Bool {
        switch self {
        case .exact(let s): return message == s
        case let .pattern(prefix, suffix): return message.hasPrefix(prefix) && message.hasSuffix(suffix) && !message.contains("\n")
        }
    }

    public var description: String {
        switch self {
        case .exact(let s): return s
        case let .pattern(prefix, suffix): return prefix + "…" + suffix
        }
    }
}

/// A fixture copy broken one way, and the one-line error loading it must give. Shared by the model
/// tests (through `Model.load`) and the CLI tests (through `banyan info`/`generate`).
public struct BrokenCheckpoint: Sendable, CustomStringConvertible {
    public let name: String
    public let fixture: String
    /// Breaks the copied model folder.
    public let breakFolder: @Sendable (URL) throws -> Void
    /// The error's description, given the model folder's path.
    public let expected: @Sendable (String) throws -> ExpectedMessage

    public var description: String { name }

    /// Copies the fixture into `folder`, breaks it, and returns the model folder's path.
    public func make(in folder: TemporaryFolder) throws -> String {
        let model = try folder.copyModel(fixture)
        try breakFolder(model)
        return model.path
    }

    /// The supported architectures, as every unknown-architecture error lists them.
    static let supported = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM"

    static func config(_ name: String, fixture: String = "llama-f32-gqa", _ edit: @escaping @Sendable (inout [String: Any]) -> Void,
                       _ message: @escaping @Sendable (String) -> String) -> BrokenCheckpoint {
        BrokenCheckpoint(name: name, fixture: fixture,
                         breakFolder: { try editJSONObject(at: $0.appendingPathComponent("config.json"), edit) },
                         expected: { .exact("\($0)/config.json: " + message($0)) })
    }

    static func header(_ name: String, _ edit: @escaping @Sendable (inout SafeTensorsImage) -> Void,
                       _ message: @escaping @Sendable (String) throws -> String) -> BrokenCheckpoint {
        BrokenCheckpoint(name: name, fixture: "llama-f32-gqa", breakFolder: { folder in
            let url = folder.appendingPathComponent("model.safetensors")
            var image = try SafeTensorsImage(contentsOf: url)
            edit(&image)
            try image.write(to: url)
        }, expected: { .exact(try message($0)) })
    }

    /// `llama-f32-gqa`'s `model.safetensors` (the fixture most cases break).
    static var gqaWeights: URL { FixturePaths.models.appendingPathComponent("llama-f32-gqa/model.safetensors") }
    static func gqaFileSize() throws -> Int {
        try FileManager.default.attributesOfItem(atPath: gqaWeights.path)[.size] as? Int ?? 0
    }

    public static let all: [BrokenCheckpoint] = [
        // Folder and config.json.
        BrokenCheckpoint(name: "missing model folder", fixture: "llama-f32-gqa",
                         breakFolder: { try FileManager.default.removeItem(at: $0) },
                         expected: { .exact("\($0): not a model folder (expected config.json and *.safetensors, or synthetic:NAME)") }),
        BrokenCheckpoint(name: "missing config.json", fixture: "llama-f32-gqa",
                         breakFolder: { try FileManager.default.removeItem(at: $0.appendingPathComponent("config.json")) },
                         expected: { .exact("\($0)/config.json: cannot read config.json") }),
        BrokenCheckpoint(name: "config.json not JSON", fixture: "llama-f32-gqa",
                         breakFolder: { try Data("{\"architectures\": [\"LlamaForCausalLM\"],".utf8).write(to: $0.appendingPathComponent("config.json")) },
                         expected: { .exact("\($0)/config.json: (document): not a valid JSON object") }),
        BrokenCheckpoint(name: "config.json a JSON list", fixture: "llama-f32-gqa",
                         breakFolder: { try Data("[1, 2]".utf8).write(to: $0.appendingPathComponent("config.json")) },
                         expected: { .exact("\($0)/config.json: (document): not a valid JSON object") }),
        BrokenCheckpoint(name: "unknown architecture", fixture: "llama-f32-gqa",
                         breakFolder: { try editJSONObject(at: $0.appendingPathComponent("config.json")) { $0["architectures"] = ["GPT2LMHeadModel"] } },
                         expected: { .exact("\($0)/config.json: architecture \"GPT2LMHeadModel\" unsupported (supported: \(supported))") }),
        config("architectures missing", { $0["architectures"] = nil }) { _ in "architectures: missing" },
        config("hidden_size a string", { $0["hidden_size"] = "abc" }) { _ in "hidden_size: expected an integer, found \"abc\"" },
        config("num_hidden_layers fractional", { $0["num_hidden_layers"] = 2.5 }) { _ in "num_hidden_layers: expected an integer, found 2.5" },
        config("vocab_size missing", { $0["vocab_size"] = nil }) { _ in "vocab_size: missing" },
        config("tie_word_embeddings a number", { $0["tie_word_embeddings"] = 1 }) { _ in "tie_word_embeddings: expected true or false, found 1" },
        config("num_key_value_heads not dividing heads", { $0["num_key_value_heads"] = 3 }) { _ in
            "num_key_value_heads: 3 does not divide num_attention_heads 8"
        },
        config("hidden_act gelu", { $0["hidden_act"] = "gelu" }) { _ in "hidden_act: \"gelu\" unsupported (silu)" },
        config("rope_parameters yarn", { $0["rope_parameters"] = ["rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0] }) { _ in
            "rope_parameters.rope_type: \"yarn\" unsupported (default, linear, llama3)"
        },
        config("rope_scaling yarn", fixture: "llama-rope-linear", { $0["rope_scaling"] = ["type": "yarn", "factor": 4.0] }) { _ in
            "rope_scaling.rope_type: \"yarn\" unsupported (default, linear, llama3)"
        },
        config("llama3 rope without low_freq_factor", fixture: "llama-rope-llama3", {
            var rope = $0["rope_scaling"] as? [String: Any] ?? [:]
            rope["low_freq_factor"] = nil
            $0["rope_scaling"] = rope
        }) { _ in "rope_scaling.low_freq_factor: missing" },

        // model.safetensors.
        BrokenCheckpoint(name: "missing model.safetensors", fixture: "llama-f32-gqa",
                         breakFolder: { try FileManager.default.removeItem(at: $0.appendingPathComponent("model.safetensors")) },
                         expected: { .exact("\($0): no model.safetensors or model.safetensors.index.json") }),
        BrokenCheckpoint(name: "empty model.safetensors", fixture: "llama-f32-gqa",
                         breakFolder: { try truncateFile(at: $0.appendingPathComponent("model.safetensors"), to: 0) },
                         expected: { .exact("\($0)/model.safetensors: file is empty") }),
        BrokenCheckpoint(name: "model.safetensors cut to 4 bytes", fixture: "llama-f32-gqa",
                         breakFolder: { try truncateFile(at: $0.appendingPathComponent("model.safetensors"), to: 4) },
                         expected: { .exact("\($0)/model.safetensors: truncated: 4 bytes, shorter than the 8-byte header length") }),
        BrokenCheckpoint(name: "model.safetensors cut mid-header", fixture: "llama-f32-gqa", breakFolder: {
            try truncateFile(at: $0.appendingPathComponent("model.safetensors"), to: 8 + SafeTensorsImage.headerLength(of: gqaWeights) / 2)
        }, expected: {
            let h = try SafeTensorsImage.headerLength(of: gqaWeights)
            return .exact("\($0)/model.safetensors: header length \(h) exceeds the file size \(8 + h / 2) (truncated or not a safetensors file)")
        }),
        BrokenCheckpoint(name: "model.safetensors cut mid-data", fixture: "llama-f32-gqa", breakFolder: {
            let h = try SafeTensorsImage.headerLength(of: gqaWeights)
            try truncateFile(at: $0.appendingPathComponent("model.safetensors"), to: 8 + h + (gqaFileSize() - 8 - h) / 2)
        }, expected: {
            // Several tensors lie past the cut; which one is named is unspecified.
            let dataBytes = try gqaFileSize() - 8 - SafeTensorsImage.headerLength(of: gqaWeights)
            return .pattern(prefix: "\($0)/model.safetensors: tensor \"",
                            suffix: "outside the \(dataBytes / 2) data bytes (truncated file?)")
        }),
        BrokenCheckpoint(name: "model.safetensors missing its last byte", fixture: "llama-f32-gqa", breakFolder: {
            try truncateFile(at: $0.appendingPathComponent("model.safetensors"), to: gqaFileSize() - 1)
        }, expected: { folder in
            let image = try SafeTensorsImage(contentsOf: gqaWeights)
            let last = image.tensorNames.max { image.offsets($0).end < image.offsets($1).end }!
            let (b, e) = image.offsets(last)
            return .exact("\(folder)/model.safetensors: tensor \"\(last)\": data offsets [\(b), \(e)) outside the \(e - 1) data bytes (truncated file?)")
        }),
        BrokenCheckpoint(name: "header length larger than the file", fixture: "llama-f32-gqa", breakFolder: {
            let url = $0.appendingPathComponent("model.safetensors")
            var bytes = try Data(contentsOf: url)
            let lie = UInt64(bytes.count)
            for i in 0..<8 { bytes[i] = UInt8(truncatingIfNeeded: lie >> (8 * UInt64(i))) }
            try bytes.write(to: url)
        }, expected: {
            let size = try gqaFileSize()
            return .exact("\($0)/model.safetensors: header length \(size) exceeds the file size \(size) (truncated or not a safetensors file)")
        }),
        BrokenCheckpoint(name: "header not JSON", fixture: "llama-f32-gqa", breakFolder: {
            let url = $0.appendingPathComponent("model.safetensors")
            var bytes = try Data(contentsOf: url)
            bytes[8] = UInt8(ascii: "x")  // `{"__metadata__"...` becomes `x"__metadata__"...`
            try bytes.write(to: url)
        }, expected: { .exact("\($0)/model.safetensors: header is not a valid JSON object (corrupt file?)") }),
        header("tensor declared I64", { $0.edit("model.norm.weight") { $0["dtype"] = "I64" } }) {
            "\($0)/model.safetensors: tensor \"model.norm.weight\": expected F32, F16 or BF16, found I64"
        },
        header("tensor bytes not matching its shape", { $0.edit("model.norm.weight") { $0["shape"] = [65] } }) {
            "\($0)/model.safetensors: tensor \"model.norm.weight\": 256 bytes for shape [65] of F32 (expected 260)"
        },
        header("tensor entry without dtype", { $0.edit("model.norm.weight") { $0["dtype"] = nil } }) {
            "\($0)/model.safetensors: tensor \"model.norm.weight\": malformed header entry"
        },
        header("tensor data offsets reversed", { $0.edit("model.norm.weight") { $0["data_offsets"] = [256, 0] } }) {
            "\($0)/model.safetensors: tensor \"model.norm.weight\": data offsets [256, 0) outside the \(try gqaFileSize() - 8 - SafeTensorsImage.headerLength(of: gqaWeights)) data bytes (truncated file?)"
        },
        header("tensor missing", { $0.header["model.layers.1.mlp.up_proj.weight"] = nil }) {
            "\($0): tensor \"model.layers.1.mlp.up_proj.weight\" missing"
        },
        header("unexpected bias tensor", { $0.header["model.layers.0.mlp.up_proj.bias"] = $0.entry("model.norm.weight") }) {
            "\($0): tensor \"model.layers.0.mlp.up_proj.bias\": expected no such tensor for LlamaForCausalLM with this config.json, found 1 unexpected tensor(s) (e.g. an unsupported bias)"
        },
        config("intermediate_size not matching the tensors", { $0["intermediate_size"] = 100 }) { _ in "" }.expecting {
            "\($0)/model.safetensors: tensor \"model.layers.0.mlp.gate_proj.weight\": expected shape [100, 64] (from config.json), found shape [96, 64]"
        },
        config("hidden_size not matching the tensors", { $0["hidden_size"] = 32 }) { _ in "" }.expecting {
            "\($0)/model.safetensors: tensor \"model.embed_tokens.weight\": expected shape [96, 32] (from config.json), found shape [96, 64]"
        },

        // Sharded checkpoints.
        BrokenCheckpoint(name: "index naming a missing shard", fixture: "llama-f32-sharded",
                         breakFolder: { try FileManager.default.removeItem(at: $0.appendingPathComponent("model-00002-of-00003.safetensors")) },
                         expected: { .exact("\($0)/model-00002-of-00003.safetensors: cannot open (No such file or directory)") }),
        BrokenCheckpoint(name: "index not JSON", fixture: "llama-f32-sharded",
                         breakFolder: { try Data("weight_map".utf8).write(to: $0.appendingPathComponent("model.safetensors.index.json")) },
                         expected: { .exact("\($0)/model.safetensors.index.json: weight_map: missing or not an object") }),
        BrokenCheckpoint(name: "index naming a tensor its shard lacks", fixture: "llama-f32-sharded", breakFolder: {
            try editJSONObject(at: $0.appendingPathComponent("model.safetensors.index.json")) {
                var map = $0["weight_map"] as? [String: Any] ?? [:]
                map["model.layers.0.mlp.extra.weight"] = "model-00001-of-00003.safetensors"
                $0["weight_map"] = map
            }
        }, expected: { .exact("\($0)/model-00001-of-00003.safetensors: tensor \"model.layers.0.mlp.extra.weight\" missing") }),
    ]

    /// The same break with a whole expected message (for config edits whose error names another file).
    func expecting(_ message: @escaping @Sendable (String) -> String) -> BrokenCheckpoint {
        BrokenCheckpoint(name: name, fixture: fixture, breakFolder: breakFolder, expected: { .exact(message($0)) })
    }
}
