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
            n += (l.attentionNorm.count + l.mlpNorm.count + (l.bq?.count ?? 0) + (l.bk?.count ?? 0) + (l.bv?.count ?? 0)) * 4
        }
        return n + finalNorm.count * 4
    }
    /// The stored dtype of the layers' matrices.
    public var dtype: DType { layers.first?.wq.dtype ?? embedding.dtype }
}

extension WeightMatrix {
    public var byteCount: Int { rows * cols * dtype.byteCount }
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

        let h = c.hiddenSize
        let embedding = try matrix("model.embed_tokens.weight", c.vocabularySize, h)
        var layers: [LayerWeights] = []
        for i in 0..<c.layerCount {
            let p = "model.layers.\(i)."
            layers.append(LayerWeights(
                attentionNorm: try vector(p + "input_layernorm.weight", h),
                wq: try matrix(p + "self_attn.q_proj.weight", c.qDim, h),
                wk: try matrix(p + "self_attn.k_proj.weight", c.kvDim, h),
                wv: try matrix(p + "self_attn.v_proj.weight", c.kvDim, h),
                wo: try matrix(p + "self_attn.o_proj.weight", h, c.qDim),
                bq: c.attentionBias ? try vector(p + "self_attn.q_proj.bias", c.qDim) : nil,
                bk: c.attentionBias ? try vector(p + "self_attn.k_proj.bias", c.kvDim) : nil,
                bv: c.attentionBias ? try vector(p + "self_attn.v_proj.bias", c.kvDim) : nil,
                mlpNorm: try vector(p + "post_attention_layernorm.weight", h),
                wGate: try matrix(p + "mlp.gate_proj.weight", c.intermediateSize, h),
                wUp: try matrix(p + "mlp.up_proj.weight", c.intermediateSize, h),
                wDown: try matrix(p + "mlp.down_proj.weight", h, c.intermediateSize)))
        }
        let finalNorm = try vector("model.norm.weight", h)
        let lmHead: WeightMatrix
        if c.tieWordEmbeddings {
            lmHead = embedding
            used.insert("lm_head.weight")  // some exporters write the tied copy anyway
        } else {
            lmHead = try matrix("lm_head.weight", c.vocabularySize, h)
        }
        let extra = ck.tensors.keys.filter { !used.contains($0) && !$0.hasSuffix("rotary_emb.inv_freq") }.sorted()
        if let first = extra.first {
            throw ModelError.tensorMismatch(name: first, file: ck.folder.path, expected: "no such tensor for \(c.architecture.rawValue) with this config.json",
                                            found: "\(extra.count) unexpected tensor(s) (e.g. an unsupported bias)")
        }
        return ModelWeights(embedding: embedding, layers: layers, finalNorm: finalNorm, lmHead: lmHead,
                            owners: ck.files.map(\.file) + copies)
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
