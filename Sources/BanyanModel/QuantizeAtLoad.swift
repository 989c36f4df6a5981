import BanyanKernels

/// ggml blocks written at load (`--quantize`, `synthetic:NAME:TYPE`); owns their memory.
final class QuantizedBuffer: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    init(byteCount: Int) { base = .allocate(byteCount: max(1, byteCount), alignment: 64) }
    deinit { base.deallocate() }
}

extension GGMLType {
    /// The type `--quantize` and `synthetic:NAME:TYPE` name, case-insensitive (`q8_0`, `q4_k`, ...),
    /// when this engine can write it.
    public init?(writableName name: String) {
        guard let t = Quantize.writable.first(where: { $0.name.lowercased() == name.lowercased() }) else { return nil }
        self = t
    }
}

extension WeightMatrix {
    /// This float matrix quantized to `type` (llama.cpp's fallback type where a row is not a whole
    /// number of `type`'s blocks; unchanged where not even 32 fit) and packed for the integer
    /// kernels, with the memory to keep alive.
    public func quantized(to type: GGMLType, threads: ThreadPool) -> (WeightMatrix, [any Sendable]) {
        guard let t = Quantize.fallback(type, count: cols), let rowBytes = t.rowByteCount(cols) else { return (self, []) }
        let buffer = QuantizedBuffer(byteCount: rows * rowBytes)
        let chunk = 64
        threads.parallelFor((rows + chunk - 1) / chunk) { c in
            let row = UnsafeMutablePointer<Float>.allocate(capacity: cols)
            defer { row.deallocate() }
            for r in (c * chunk)..<min(rows, (c + 1) * chunk) {
                copyRow(r, into: row)
                Quantize.row(t, row, count: cols, into: buffer.base + r * rowBytes)
            }
        }
        let blocks = UnsafeRawPointer(buffer.base)
        let packed = PackedWeights(type: t, rows: rows, cols: cols, blocks: blocks, rowByteCount: rowBytes, pool: threads)
        let matrix = WeightMatrix(rows: rows, cols: cols, quantized: QuantizedRows(type: t, base: blocks, rowByteCount: rowBytes), packed: packed)
        return (matrix, [buffer] + (packed.map { [$0] } ?? []))
    }
}

extension ModelWeights {
    /// Every matrix (embedding, layers, LM head; a tied head stays tied) quantized to `type`. The
    /// weights must be float: re-quantizing a quantized file would compound two roundings.
    func quantized(to type: GGMLType, threads: ThreadPool, source: String) throws -> ModelWeights {
        if let q = quantizedType {
            throw ModelError.invalidInput("--quantize \(type.name.lowercased()): \(source) is already quantized (\(q.name)); --quantize applies to float weights")
        }
        var owners: [any Sendable] = []
        func convert(_ m: WeightMatrix) -> WeightMatrix {
            let (q, o) = m.quantized(to: type, threads: threads)
            owners += o
            return q
        }
        let embedding = convert(embedding)
        let tied = lmHead.base == self.embedding.base
        let layers = layers.map { l in
            LayerWeights(attentionNorm: l.attentionNorm, wq: convert(l.wq), wk: convert(l.wk), wv: convert(l.wv), wo: convert(l.wo),
                         bq: l.bq, bk: l.bk, bv: l.bv, mlpNorm: l.mlpNorm,
                         wGate: convert(l.wGate), wUp: convert(l.wUp), wDown: convert(l.wDown), qNorm: l.qNorm, kNorm: l.kNorm)
        }
        return ModelWeights(embedding: embedding, layers: layers, finalNorm: finalNorm,
                            lmHead: tied ? embedding : convert(lmHead), owners: owners)
    }
}
