import Foundation
import BanyanKernels

// MARK: - Config from GGUF metadata

extension GGUFFile {
    /// The scalar metadata as JSON values, read with config.json's typed accessors and messages
    /// (`<file>: llama.block_count: missing`). Arrays (token lists) become empty lists, enough for
    /// "expected an integer, found a list"; an integer beyond 2^53, which a JSON number cannot hold
    /// exactly, becomes its decimal string, so reading it as a number is an error, not a rounded value.
    var scalarMetadata: ConfigReader {
        var dict: [String: JSONValue] = [:]
        for (key, value) in metadata {
            switch value {
            case .uint(let u): dict[key] = u <= 1 << 53 ? .number(Double(u)) : .string(String(u))
            case .int(let i): dict[key] = i.magnitude <= 1 << 53 ? .number(Double(i)) : .string(String(i))
            case .float(let d): dict[key] = .number(d)
            case .bool(let b): dict[key] = .bool(b)
            case .string(let s): dict[key] = .string(s)
            case .array: dict[key] = .array([])
            }
        }
        return ConfigReader(dict: dict, file: path, prefix: "")
    }
}

extension Architecture {
    /// The architecture named by GGUF's `general.architecture`. llama.cpp writes Mistral models as `llama`.
    init?(ggufName: String) {
        switch ggufName {
        case "llama": self = .llama
        case "qwen2": self = .qwen2
        case "qwen3": self = .qwen3
        default: return nil
        }
    }
}

extension ModelConfig {
    /// Resolves a GGUF file's `general.architecture` and `{arch}.*` metadata (llama.cpp's key names,
    /// src/llama-arch.cpp); BOS/EOS from `tokenizer.ggml.*`. The vocabulary size is the row count of
    /// `token_embd.weight`; tied embeddings when the file has no `output.weight`.
    public init(gguf g: GGUFFile) throws {
        let r = g.scalarMetadata
        guard let archName = try r.string("general.architecture") else {
            throw ModelError.config(file: g.path, field: "general.architecture", message: "missing")
        }
        guard let arch = Architecture(ggufName: archName) else {
            throw ModelError.config(file: g.path, field: "general.architecture", message: "\"\(archName)\" unsupported (llama, qwen2, qwen3)")
        }
        let a = archName + "."
        let hidden = try r.requiredInt(a + "embedding_length")
        let layers = try r.requiredInt(a + "block_count")
        let heads = try r.requiredInt(a + "attention.head_count")
        let kvHeads = try r.int(a + "attention.head_count_kv") ?? heads
        let headDim = try r.int(a + "attention.key_length") ?? (hidden / max(heads, 1))
        let ffn = try r.requiredInt(a + "feed_forward_length")
        for (key, v) in [("embedding_length", hidden), ("block_count", layers), ("attention.head_count", heads),
                         ("attention.head_count_kv", kvHeads), ("attention.key_length", headDim), ("feed_forward_length", ffn)] where v <= 0 {
            throw ModelError.config(file: g.path, field: a + key, message: "must be positive, found \(v)")
        }
        guard heads % kvHeads == 0 else {
            throw ModelError.config(file: g.path, field: a + "attention.head_count_kv",
                                    message: "\(kvHeads) does not divide attention.head_count \(heads)")
        }
        guard headDim % 2 == 0 else {
            throw ModelError.config(file: g.path, field: a + "attention.key_length", message: "must be even for RoPE, found \(headDim)")
        }
        if let valueLength = try r.int(a + "attention.value_length"), valueLength != headDim {
            throw ModelError.config(file: g.path, field: a + "attention.value_length",
                                    message: "\(valueLength) differs from the key length \(headDim) (unsupported)")
        }
        if let ropeDims = try r.int(a + "rope.dimension_count"), ropeDims != headDim {
            throw ModelError.config(file: g.path, field: a + "rope.dimension_count",
                                    message: "\(ropeDims) (partial rotary) unsupported: expected the head dimension \(headDim)")
        }

        var scaling = RopeScaling.none
        let scalingType = try r.string(a + "rope.scaling.type") ?? "none"
        switch scalingType {
        case "none": break
        case "linear":
            guard let factor = try r.double(a + "rope.scaling.factor") else {
                throw ModelError.config(file: g.path, field: a + "rope.scaling.factor", message: "missing (rope.scaling.type is linear)")
            }
            scaling = .linear(factor: factor)
        default:
            throw ModelError.config(file: g.path, field: a + "rope.scaling.type", message: "\"\(scalingType)\" unsupported (none, linear)")
        }
        // Older converters wrote linear scaling as one key.
        if case .none = scaling, let factor = try r.double(a + "rope.scale_linear"), factor != 1 { scaling = .linear(factor: factor) }
        if case .linear(let factor) = scaling, factor <= 0 {
            throw ModelError.config(file: g.path, field: a + "rope.scaling.factor", message: "must be positive, found \(factor)")
        }

        if let freqs = g.tensors["rope_freqs.weight"] {
            guard case .none = scaling else {
                throw ModelError.config(file: g.path, field: a + "rope.scaling.type", message: "set together with rope_freqs.weight (one scaling only)")
            }
            guard freqs.shape == [headDim / 2] else {
                throw ModelError.tensorMismatch(name: "rope_freqs.weight", file: g.path, expected: "shape [\(headDim / 2)] (half the head dimension)",
                                                found: "shape \(freqs.shape)")
            }
            var factors = [Float](repeating: 0, count: headDim / 2)
            factors.withUnsafeMutableBufferPointer { Dequantize.row(freqs.type, freqs.pointer, count: headDim / 2, into: $0.baseAddress!) }
            guard factors.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw ModelError.tensorMismatch(name: "rope_freqs.weight", file: g.path, expected: "positive factors", found: "\(factors)")
            }
            scaling = .frequencyFactors(factors)
        }

        guard let embedding = g.tensors["token_embd.weight"] else {
            throw ModelError.missingTensor(name: "token_embd.weight", files: g.path)
        }
        guard embedding.shape.count == 2, embedding.shape[0] == hidden else {
            throw ModelError.tensorMismatch(name: "token_embd.weight", file: g.path,
                                            expected: "shape [\(hidden), vocabulary] (ggml order, from \(a)embedding_length)",
                                            found: "shape \(embedding.shape)")
        }
        let vocab = embedding.shape[1]
        guard vocab > 0 else {
            throw ModelError.tensorMismatch(name: "token_embd.weight", file: g.path, expected: "at least one row (token)", found: "shape \(embedding.shape)")
        }
        if let declared = try r.int(a + "vocab_size"), declared != vocab {
            throw ModelError.config(file: g.path, field: a + "vocab_size", message: "\(declared) differs from token_embd.weight's \(vocab) rows")
        }
        // llama.cpp stops at any end-of-generation token: EOS, and end-of-turn / end-of-message when set.
        var eos: [Int] = []
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            if let id = try r.int(key), !eos.contains(id) { eos.append(id) }
        }
        let bias = arch == .qwen2 || g.tensors["blk.0.attn_q.bias"] != nil

        self.init(architecture: arch, hiddenSize: hidden, layerCount: layers, headCount: heads, kvHeadCount: kvHeads,
                  headDim: headDim, intermediateSize: ffn, vocabularySize: vocab,
                  maxPositionCount: try r.int(a + "context_length") ?? 2048,
                  rmsNormEpsilon: Float(try r.double(a + "attention.layer_norm_rms_epsilon") ?? 1e-5),
                  ropeTheta: try r.double(a + "rope.freq_base") ?? 10000, ropeScaling: scaling,
                  tieWordEmbeddings: g.tensors["output.weight"] == nil, attentionBias: bias,
                  qkNorm: arch == .qwen3 || g.tensors["blk.0.attn_q_norm.weight"] != nil, slidingWindow: nil,
                  bosTokenID: try r.int("tokenizer.ggml.bos_token_id"), eosTokenIDs: eos)
    }
}

// MARK: - Weights from GGUF tensors

extension ModelWeights {
    /// Binds every tensor of a GGUF checkpoint, checking shapes against `config`. Float tensors stay
    /// memory-mapped in their stored dtype; quantized ones stay memory-mapped as ggml blocks (row
    /// gathers and `exact` products widen them on the fly) and are repacked for the integer kernels.
    ///
    /// llama.cpp's converter permutes the Q and K rows of `llama` models so that each head's rotary
    /// pairs are adjacent (interleaved RoPE); Banyan rotates halves as transformers does, so those
    /// rows are put back in Hugging Face order here (`qwen2` files are not permuted).
    static func load(gguf g: GGUFFile, config c: ModelConfig, threads: ThreadPool) throws -> ModelWeights {
        var used = Set<String>()
        var owners: [any Sendable] = [g.file]

        func tensor(_ name: String, shape: [Int]) throws -> GGUFTensor {
            guard let t = g.tensors[name] else { throw ModelError.missingTensor(name: name, files: g.path) }
            guard t.shape == shape else {
                throw ModelError.tensorMismatch(name: name, file: g.path, expected: "shape \(shape) (ggml order, from the metadata)",
                                                found: "shape \(t.shape)")
            }
            used.insert(name)
            return t
        }
        /// `[rows, cols]` matrix; `headsToUnpermute` undoes the converter's Q/K row permutation.
        func matrix(_ name: String, _ rows: Int, _ cols: Int, headsToUnpermute: Int? = nil) throws -> WeightMatrix {
            let t = try tensor(name, shape: [cols, rows])
            let rowBytes = t.byteCount / rows
            var source = t.pointer
            if let heads = headsToUnpermute {
                let copy = AlignedCopy(byteCount: t.byteCount)
                unpermuteRotaryRows(from: t.pointer, to: copy.base, rows: rows, rowByteCount: rowBytes, heads: heads)
                owners.append(copy)
                source = UnsafeRawPointer(copy.base)
            }
            switch t.type {
            case .f32, .f16, .bf16:
                let dtype: DType = t.type == .f32 ? .f32 : t.type == .f16 ? .f16 : .bf16
                if Int(bitPattern: source) % dtype.byteCount != 0 {  // only with a general.alignment below 4
                    let copy = AlignedCopy(from: source, byteCount: t.byteCount)
                    owners.append(copy)
                    source = UnsafeRawPointer(copy.base)
                }
                return WeightMatrix(dtype: dtype, rows: rows, cols: cols, base: source)
            default:
                let rows8 = QuantizedRows(type: t.type, base: source, rowByteCount: rowBytes)
                let packed = PackedWeights(type: t.type, rows: rows, cols: cols, blocks: source, rowByteCount: rowBytes, pool: threads)
                if let packed { owners.append(packed) }
                return WeightMatrix(rows: rows, cols: cols, quantized: rows8, packed: packed)
            }
        }
        func vector(_ name: String, _ count: Int, headsToUnpermute: Int? = nil) throws -> [Float] {
            let t = try tensor(name, shape: [count])
            var v = [Float](repeating: 0, count: count)
            v.withUnsafeMutableBufferPointer { Dequantize.row(t.type, t.pointer, count: count, into: $0.baseAddress!) }
            if let heads = headsToUnpermute {
                let permuted = v
                permuted.withUnsafeBytes { src in
                    v.withUnsafeMutableBytes { unpermuteRotaryRows(from: src.baseAddress!, to: $0.baseAddress!, rows: count, rowByteCount: 4, heads: heads) }
                }
            }
            return v
        }

        // Only llama files are permuted (llama.cpp runs qwen2 with NEOX, i.e. rotate-half, RoPE).
        let permuteQK = c.architecture == .llama
        let (embedding, layers, finalNorm, lmHead) = try assemble(
            config: c, names: .gguf,
            matrix: { name, rows, cols, heads in try matrix(name, rows, cols, headsToUnpermute: permuteQK ? heads : nil) },
            vector: { name, count, heads in try vector(name, count, headsToUnpermute: permuteQK ? heads : nil) })

        // rope_freqs.weight went into the config's RoPE scaling.
        let extra = g.tensorNames.filter { !used.contains($0) && $0 != "rope_freqs.weight" }
        if let first = extra.first {
            throw ModelError.tensorMismatch(name: first, file: g.path, expected: "no such tensor for \(c.architecture.rawValue)",
                                            found: "\(extra.count) unexpected tensor(s)")
        }
        return ModelWeights(embedding: embedding, layers: layers, finalNorm: finalNorm, lmHead: lmHead, owners: owners)
    }
}

/// Undoes llama.cpp's `LlamaModel.permute` on the rows of a Q or K projection (or bias): within each
/// head of `rows / heads` rows, the converter moved Hugging Face row `s · half + i` (s = 0, 1) to
/// row `2i + s`. Rows are moved whole, so this works on any row format, quantized blocks included.
func unpermuteRotaryRows(from src: UnsafeRawPointer, to dst: UnsafeMutableRawPointer, rows: Int, rowByteCount: Int, heads: Int) {
    let perHead = rows / heads, half = perHead / 2
    for h in 0..<heads {
        for s in 0..<2 {
            for i in 0..<half {
                let hf = h * perHead + s * half + i, stored = h * perHead + 2 * i + s
                (dst + hf * rowByteCount).copyMemory(from: src + stored * rowByteCount, byteCount: rowByteCount)
            }
        }
    }
}
