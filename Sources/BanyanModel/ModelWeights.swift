import Foundation
import BanyanKernels

/// Weights of one decoder layer. Matrices stay in their stored dtype (memory-mapped); norms and
/// biases are small and widened to float32 once.
public struct LayerWeights: Sendable {
    public var attentionNorm: [Float]        // [hidden]
    public var wq, wk, wv, wo: WeightMatrix   // [qDim, hidden], [kvDim, hidden] ×2, [hidden, qDim]
    public var bq, bk, bv: [Float]?           // [qDim], [kvDim], [kvDim] when attentionBias
    public var mlpNorm: [Float]               // [hidden]
    public var wGate, wUp, wDown: WeightMatrix // [ffn, hidden] ×2, [hidden, ffn]
    public var qNorm: [Float]? = nil          // [headDim] when qkNorm
    public var kNorm: [Float]? = nil          // [headDim] when qkNorm
}

/// All weights of a model, plus whatever owns their memory (mappings or a synthetic buffer).
public struct ModelWeights: Sendable {
    public var embedding: WeightMatrix        // [vocab, hidden]
    public var layers: [LayerWeights]
    public var finalNorm: [Float]             // [hidden]
    public var lmHead: WeightMatrix           // [vocab, hidden]; the embedding when tied
    /// Keeps the memory behind the matrices alive.
    let owners: [any Sendable]

    /// Bytes of all weight matrices as stored (tied embeddings counted once).
    public var byteCount: Int {
        var n = embedding.byteCount + (lmHead.base == embedding.base ? 0 : lmHead.byteCount)
        for l in layers {
            n += [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown].reduce(0) { $0 + $1.byteCount }
            n += (l.attentionNorm.count + l.mlpNorm.count + (l.bq?.count ?? 0) + (l.bk?.count ?? 0) + (l.bv?.count ?? 0)
                  + (l.qNorm?.count ?? 0) + (l.kNorm?.count ?? 0)) * 4
        }
        return n + finalNorm.count * 4
    }
    /// The stored dtype of the layers' matrices (`f32` when they are quantized; see `quantizedType`).
    public var dtype: DType { layers.first?.wq.dtype ?? embedding.dtype }
    /// How many weight matrices (embedding, layers, LM head; a tied head counted once) are stored in
    /// each type, by ggml's names (`F32`, `BF16`, `Q4_K`, ...): what `banyan info` reports.
    public var tensorTypeCounts: [(key: String, value: Int)] {
        var counts: [String: Int] = [:]
        var matrices = [embedding]
        for l in layers { matrices += [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown] }
        if lmHead.base != embedding.base { matrices.append(lmHead) }
        for m in matrices { counts[m.quantized?.type.name ?? m.dtype.rawValue.uppercased(), default: 0] += 1 }
        return counts.sorted { $0.key < $1.key }
    }

    /// The ggml type of most layer matrices when the model is quantized (Q4_K_M files mix Q4_K and
    /// Q6_K; this is the commonest by bytes), nil for float models.
    public var quantizedType: GGMLType? {
        var bytes: [GGMLType: Int] = [:]
        for l in layers {
            for m in [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown] { if let q = m.quantized { bytes[q.type, default: 0] += m.byteCount } }
        }
        return bytes.max { $0.value < $1.value || ($0.value == $1.value && $0.key.rawValue < $1.key.rawValue) }?.key
    }
}

/// What a checkpoint format calls each weight (`prefix(layer) + q + ".weight"`); the model's
/// inventory of weights and their shapes is written once, in `ModelWeights.assemble`.
struct TensorNames {
    let embedding, finalNorm, lmHead: String
    let layerPrefix: @Sendable (Int) -> String
    let attentionNorm, q, k, v, o, mlpNorm, gate, up, down, qNorm, kNorm: String

    static let huggingFace = TensorNames(
        embedding: "model.embed_tokens", finalNorm: "model.norm", lmHead: "lm_head", layerPrefix: { "model.layers.\($0)." },
        attentionNorm: "input_layernorm", q: "self_attn.q_proj", k: "self_attn.k_proj", v: "self_attn.v_proj",
        o: "self_attn.o_proj", mlpNorm: "post_attention_layernorm", gate: "mlp.gate_proj", up: "mlp.up_proj", down: "mlp.down_proj",
        qNorm: "self_attn.q_norm", kNorm: "self_attn.k_norm")
    /// llama.cpp's names (src/llama-arch.cpp).
    static let gguf = TensorNames(
        embedding: "token_embd", finalNorm: "output_norm", lmHead: "output", layerPrefix: { "blk.\($0)." },
        attentionNorm: "attn_norm", q: "attn_q", k: "attn_k", v: "attn_v", o: "attn_output", mlpNorm: "ffn_norm",
        gate: "ffn_gate", up: "ffn_up", down: "ffn_down", qNorm: "attn_q_norm", kNorm: "attn_k_norm")
}

extension ModelWeights {
    /// Binds every tensor a Llama-family checkpoint must have, checking shapes against `config`.
    /// Tensors we would not use are an error: they mean a variant whose math we do not implement.
    static func load(checkpoint ck: Checkpoint, config c: ModelConfig) throws -> ModelWeights {
        var used = Set<String>()
        func matrix(_ name: String, _ rows: Int, _ cols: Int) throws -> WeightMatrix {
            let t = try ck.tensor(name, shape: [rows, cols])
            used.insert(name)
            return WeightMatrix(dtype: t.dtype, rows: rows, cols: cols, base: try aligned(t))
        }
        func vector(_ name: String, _ count: Int) throws -> [Float] {
            let t = try ck.tensor(name, shape: [count])
            used.insert(name)
            let w = WeightMatrix(dtype: t.dtype, rows: 1, cols: count, base: try aligned(t))
            return (0..<count).map { w.element(0, $0) }
        }
        var copies: [AlignedCopy] = []
        // safetensors packs tensors back to back, so a float32 tensor may start on a 2-byte boundary.
        func aligned(_ t: TensorEntry) throws -> UnsafeRawPointer {
            let p = t.pointer
            if Int(bitPattern: p) % t.dtype.byteCount == 0 { return p }
            let copy = AlignedCopy(from: p, byteCount: t.byteCount)
            copies.append(copy)
            return UnsafeRawPointer(copy.base)
        }

        let (embedding, layers, finalNorm, lmHead) = try assemble(config: c, names: .huggingFace,
                                                                  matrix: { name, rows, cols, _ in try matrix(name, rows, cols) },
                                                                  vector: { name, count, _ in try vector(name, count) })
        if c.tieWordEmbeddings { used.insert("lm_head.weight") }  // some exporters write the tied copy anyway
        let extra = ck.tensors.keys.filter { !used.contains($0) && !$0.hasSuffix("rotary_emb.inv_freq") }.sorted()
        if let first = extra.first {
            throw ModelError.tensorMismatch(name: first, file: ck.folder.path, expected: "no such tensor for \(c.architecture.rawValue) with this config.json",
                                            found: "\(extra.count) unexpected tensor(s) (e.g. an unsupported bias)")
        }
        return ModelWeights(embedding: embedding, layers: layers, finalNorm: finalNorm, lmHead: lmHead,
                            owners: ck.files.map(\.file) + copies)
    }
}

extension ModelWeights {
    /// Every weight of a Llama-family model with its shape (`[rows = out, cols = in]`), bound by
    /// `matrix` and `vector` under `names`. Q and K (weights and biases) pass their head count, for
    /// formats that store their rows in another rotary order; the LM head is the embedding when tied.
    static func assemble(config c: ModelConfig, names n: TensorNames,
                         matrix: (_ name: String, _ rows: Int, _ cols: Int, _ rotaryHeads: Int?) throws -> WeightMatrix,
                         vector: (_ name: String, _ count: Int, _ rotaryHeads: Int?) throws -> [Float])
        throws -> (embedding: WeightMatrix, layers: [LayerWeights], finalNorm: [Float], lmHead: WeightMatrix) {
        let h = c.hiddenSize, ffn = c.intermediateSize
        let embedding = try matrix(n.embedding + ".weight", c.vocabularySize, h, nil)
        var layers: [LayerWeights] = []
        for i in 0..<c.layerCount {
            let p = n.layerPrefix(i)
            func bias(_ name: String, _ count: Int, _ heads: Int?) throws -> [Float]? {
                c.attentionBias ? try vector(p + name + ".bias", count, heads) : nil
            }
            layers.append(LayerWeights(
                attentionNorm: try vector(p + n.attentionNorm + ".weight", h, nil),
                wq: try matrix(p + n.q + ".weight", c.qDim, h, c.headCount),
                wk: try matrix(p + n.k + ".weight", c.kvDim, h, c.kvHeadCount),
                wv: try matrix(p + n.v + ".weight", c.kvDim, h, nil),
                wo: try matrix(p + n.o + ".weight", h, c.qDim, nil),
                bq: try bias(n.q, c.qDim, c.headCount), bk: try bias(n.k, c.kvDim, c.kvHeadCount), bv: try bias(n.v, c.kvDim, nil),
                mlpNorm: try vector(p + n.mlpNorm + ".weight", h, nil),
                wGate: try matrix(p + n.gate + ".weight", ffn, h, nil),
                wUp: try matrix(p + n.up + ".weight", ffn, h, nil),
                wDown: try matrix(p + n.down + ".weight", h, ffn, nil),
                qNorm: c.qkNorm ? try vector(p + n.qNorm + ".weight", c.headDim, nil) : nil,
                kNorm: c.qkNorm ? try vector(p + n.kNorm + ".weight", c.headDim, nil) : nil))
        }
        let finalNorm = try vector(n.finalNorm + ".weight", h, nil)
        let lmHead = c.tieWordEmbeddings ? embedding : try matrix(n.lmHead + ".weight", c.vocabularySize, h, nil)
        return (embedding, layers, finalNorm, lmHead)
    }
}

/// An aligned heap copy of a misaligned tensor, or a buffer for a tensor transformed at load.
final class AlignedCopy: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    init(byteCount: Int) {
        base = .allocate(byteCount: max(byteCount, 1), alignment: 64)
    }
    convenience init(from p: UnsafeRawPointer, byteCount: Int) {
        self.init(byteCount: byteCount)
        base.copyMemory(from: p, byteCount: byteCount)
    }
    deinit { base.deallocate() }
}
