import CBanyanKernels

/// A quantized weight matrix repacked at load for the integer-product kernels (quant.c): output
/// columns in groups of 8, each sub-block's weights as int8 (P8), 4-bit (P4) or 6-bit (P6) values interleaved for
/// 8-lane products, scales beside them. Every element keeps the exact value ggml dequantizes it to
/// (`scale · w + min`), so `fast` differs from `exact` only by quantizing the activations.
public final class PackedWeights: @unchecked Sendable {
    public let type: GGMLType
    public let rows: Int
    public let cols: Int
    /// Bytes of the packed weights and scales (what one product reads).
    public let byteCount: Int
    let descriptor: banyan_qweight
    private let weightBytes: UnsafeMutableRawPointer
    private let scaleBytes: UnsafeMutableRawPointer

    /// The kernel layout of each ggml type: packed format, scale format, sub-block size, and how many
    /// chunk products the P8 kernel may sum in int16 (each |Σ| ≤ 2 · max|w| · 127 must stay < 32768).
    struct Layout {
        let format: Int32, scales: Int32, subBlock: Int, int16Sums: Int32
        /// Bytes of scales per column group per sub-block (amortised for the K formats).
        func scaleGroupBytes(cols k: Int) -> Int {
            switch scales {
            case Int32(BANYAN_QS_F16): return k / subBlock * 16
            case Int32(BANYAN_QS_F16_MIN): return k / subBlock * 48
            case Int32(BANYAN_QS_K): return k / 256 * 160
            default: return k / 256 * 144
            }
        }
    }

    static func layout(_ type: GGMLType) -> Layout? {
        let p8 = Int32(BANYAN_Q_P8), p4 = Int32(BANYAN_Q_P4)
        switch type {
        case .q8_0: return Layout(format: p8, scales: Int32(BANYAN_QS_F16), subBlock: 32, int16Sums: 1)      // |w| ≤ 128
        case .q5_0: return Layout(format: p8, scales: Int32(BANYAN_QS_F16), subBlock: 32, int16Sums: 8)      // |w| ≤ 16
        case .q5_1: return Layout(format: p8, scales: Int32(BANYAN_QS_F16_MIN), subBlock: 32, int16Sums: 4)  // w ≤ 31
        case .q5_K: return Layout(format: p8, scales: Int32(BANYAN_QS_K), subBlock: 32, int16Sums: 4)        // w ≤ 31
        case .q6_K: return Layout(format: Int32(BANYAN_Q_P6), scales: Int32(BANYAN_QS_K6), subBlock: 16, int16Sums: 0)   // P8 only
        case .q4_0, .q4_1: return Layout(format: p4, scales: Int32(BANYAN_QS_F16_MIN), subBlock: 32, int16Sums: 8)
        case .q4_K: return Layout(format: p4, scales: Int32(BANYAN_QS_K), subBlock: 32, int16Sums: 8)
        case .f32, .f16, .bf16: return nil
        }
    }

    /// Repacks `rows` rows of ggml blocks (`rowByteCount` bytes each, `cols` elements) of `type`;
    /// nil for the float types. Filled by `pool`, one column group per task.
    public init?(type: GGMLType, rows: Int, cols: Int, blocks: UnsafeRawPointer, rowByteCount: Int, pool: ThreadPool) {
        guard let l = PackedWeights.layout(type), cols % type.blockSize == 0, cols % 32 == 0 else { return nil }
        self.type = type; self.rows = rows; self.cols = cols
        let groups = (rows + 7) / 8
        let groupWeightBytes = l.format == Int32(BANYAN_Q_P8) ? cols * 8 : l.format == Int32(BANYAN_Q_P6) ? cols * 6 : cols * 4
        let groupScaleBytes = l.scaleGroupBytes(cols: cols)
        weightBytes = .allocate(byteCount: max(1, groups * groupWeightBytes), alignment: 64)
        scaleBytes = .allocate(byteCount: max(1, groups * groupScaleBytes), alignment: 64)
        weightBytes.initializeMemory(as: UInt8.self, repeating: 0, count: max(1, groups * groupWeightBytes))
        scaleBytes.initializeMemory(as: UInt8.self, repeating: 0, count: max(1, groups * groupScaleBytes))
        byteCount = groups * (groupWeightBytes + groupScaleBytes)
        descriptor = banyan_qweight(format: l.format, scale_format: l.scales, sub_block: l.subBlock, int16_sums: l.int16Sums,
                                    k: cols, n: rows, weights: UnsafePointer(weightBytes.assumingMemoryBound(to: Int8.self)),
                                    scales: UnsafeRawPointer(scaleBytes), scale_group_bytes: groupScaleBytes)
        let (wb, sb) = (weightBytes, scaleBytes)
        pool.parallelFor(groups) { g in
            let w = wb + g * groupWeightBytes, s = sb + g * groupScaleBytes
            for c in 0..<8 where g * 8 + c < rows {
                PackedWeights.packRow(type, l, blocks + (g * 8 + c) * rowByteCount, cols: cols, column: c, weights: w, scales: s)
            }
        }
    }

    deinit { weightBytes.deallocate(); scaleBytes.deallocate() }

    /// Writes one row (column `c` of its group): integer values into the interleaved chunks, scales
    /// into the group's scale block, both read from the ggml block exactly as `Dequantize` reads them.
    static func packRow(_ type: GGMLType, _ l: Layout, _ src: UnsafeRawPointer, cols: Int, column c: Int,
                        weights w: UnsafeMutableRawPointer, scales s: UnsafeMutableRawPointer) {
        let S = l.subBlock
        let p4 = l.format == Int32(BANYAN_Q_P4), p6 = l.format == Int32(BANYAN_Q_P6)
        /// Element `e` of the row gets integer value `v` (P6: the unsigned 6-bit q).
        func put(_ e: Int, _ v: Int) {
            let j = e / S, i = e % S
            if p6 {  // chunk t < 3 holds element 4t+i in bits 0..5; element 12+i's bits 2t, 2t+1 go to bits 6..7 of chunk t
                let t = i / 4
                for u in (t < 3 ? t..<(t + 1) : 0..<3) {
                    let byte = w.advanced(by: j * 96 + u * 32 + c * 4 + i % 4).assumingMemoryBound(to: UInt8.self)
                    byte.pointee |= t < 3 ? UInt8(v) : UInt8((v >> (2 * u)) & 3) << 6
                }
            } else if p4 {
                let t = i / 8, u = i % 8
                let byte = w.advanced(by: j * 128 + t * 32 + c * 4 + u % 4).assumingMemoryBound(to: UInt8.self)
                byte.pointee |= u < 4 ? UInt8(v) : UInt8(v) << 4
            } else {
                w.storeBytes(of: Int8(v), toByteOffset: j * S * 8 + (i / 4) * 32 + c * 4 + i % 4, as: Int8.self)
            }
        }
        func f16Scale(_ j: Int, _ d: UInt16) { s.storeBytes(of: d, toByteOffset: j * (l.scales == Int32(BANYAN_QS_F16) ? 16 : 48) + c * 2, as: UInt16.self) }
        func minimum(_ j: Int, _ m: Float) { s.storeBytes(of: m, toByteOffset: j * 48 + 16 + c * 4, as: Float.self) }
        func half(_ p: UnsafeRawPointer, _ o: Int) -> UInt16 { p.loadUnaligned(fromByteOffset: o, as: UInt16.self).littleEndian }
        func byte(_ p: UnsafeRawPointer, _ o: Int) -> UInt8 { p.load(fromByteOffset: o, as: UInt8.self) }

        for b in 0..<(cols / type.blockSize) {
            let x = src + b * type.blockByteCount, e0 = b * type.blockSize
            switch type {
            case .q8_0:
                f16Scale(b, half(x, 0))
                for j in 0..<32 { put(e0 + j, Int(Int8(bitPattern: byte(x, 2 + j)))) }
            case .q4_0, .q4_1:
                let d = half(x, 0)
                f16Scale(b, d)
                minimum(b, type == .q4_0 ? -8 * f16ToFloat(d) : f16ToFloat(half(x, 2)))
                let qs = x + (type == .q4_0 ? 2 : 4)
                for j in 0..<16 { let q = byte(qs, j); put(e0 + j, Int(q & 15)); put(e0 + j + 16, Int(q >> 4)) }
            case .q5_0, .q5_1:
                let d = half(x, 0), q1 = type == .q5_1
                f16Scale(b, d)
                if q1 { minimum(b, f16ToFloat(half(x, 2))) }
                let qh = x.loadUnaligned(fromByteOffset: q1 ? 4 : 2, as: UInt32.self).littleEndian, qs = x + (q1 ? 8 : 6)
                for j in 0..<16 {
                    let q = byte(qs, j)
                    let lo = Int(q & 15) | Int((qh >> UInt32(j)) & 1) << 4, hi = Int(q >> 4) | Int((qh >> UInt32(j + 16)) & 1) << 4
                    put(e0 + j, q1 ? lo : lo - 16); put(e0 + j + 16, q1 ? hi : hi - 16)
                }
            case .q4_K, .q5_K:
                let sb = s + b * 160
                sb.storeBytes(of: half(x, 0), toByteOffset: c * 2, as: UInt16.self)
                sb.storeBytes(of: half(x, 2), toByteOffset: 16 + c * 2, as: UInt16.self)
                let five = type == .q5_K, qh = x + 16, qs = x + (five ? 48 : 16)
                for sub in 0..<8 {
                    let (sc, m) = Dequantize.scaleMin(x + 4, sub)
                    sb.storeBytes(of: sc, toByteOffset: 32 + sub * 8 + c, as: UInt8.self)
                    sb.storeBytes(of: m, toByteOffset: 96 + sub * 8 + c, as: UInt8.self)
                    let chunk = qs + (sub / 2) * 32, shift = UInt8((sub % 2) * 4)
                    for i in 0..<32 {
                        var q = Int((byte(chunk, i) >> shift) & 15)
                        if five { q |= Int((byte(qh, i) >> UInt8(sub)) & 1) << 4 }
                        put(e0 + sub * 32 + i, q)
                    }
                }
            case .q6_K:
                let sb = s + b * 144
                sb.storeBytes(of: half(x, 208), toByteOffset: c * 2, as: UInt16.self)
                // Scales in pairs per 32 (the two 16s of one activation block side by side per column).
                for j in 0..<16 { sb.storeBytes(of: byte(x, 192 + j), toByteOffset: 16 + (j / 2) * 16 + c * 2 + j % 2, as: UInt8.self) }
                for e in 0..<256 { put(e0 + e, Dequantize.q6KValue(x, e)) }   // P6 keeps q; the element is q − 32
            case .f32, .f16, .bf16:
                preconditionFailure("float types are not packed")
            }
        }
    }
}

/// `out[m, n] = Σ_k x[m, k] · W[n, k]` for quantized `W`: each x row quantized per 32 to int8, integer
/// products per weight sub-block, float32 accumulation in sub-block order (quant.c). Each element's
/// bits depend only on its own x row and W row (batch invariance), and the AVX2 and portable paths
/// give the same bits.
public func quantizedMatmul(_ x: UnsafePointer<Float>, rows: Int, weight: PackedWeights,
                            out: UnsafeMutablePointer<Float>, pool: ThreadPool, path: KernelPath = KernelDispatch.active) {
    quantizedMatmul(x, rows: rows, products: [(weight, out)], pool: pool, path: path)
}

/// Several products of one input (a layer's q, k and v; gate and up): x is quantized once and the
/// products' column groups share one parallel dispatch. Each `out` gets exactly the bits of its own
/// single product.
public func quantizedMatmul(_ x: UnsafePointer<Float>, rows: Int, products: [(weight: PackedWeights, out: UnsafeMutablePointer<Float>)],
                            pool: ThreadPool, path: KernelPath = KernelDispatch.active) {
    precondition(KernelDispatch.supports(path), "kernel path \(path) unsupported on this CPU")
    guard rows > 0, let k = products.first?.weight.cols else { return }
    precondition(products.allSatisfy { $0.weight.cols == k }, "products of one input need the same column count")
    let a = QuantizedActivations(x, rows: rows, k: k, path: path, pool: pool)
    // Decode wants ~4 tasks per thread, of about equal bytes over all products (a Q4_K_M layer mixes
    // Q4_K and Q6_K); larger batches keep a task's weights within ~256 KiB of L2.
    var tasks: [(product: Int, g0: Int, g1: Int)] = []
    let taskBytes = max(1, (products.reduce(0) { $0 + $1.weight.byteCount } + 4 * pool.threadCount - 1) / (4 * pool.threadCount))
    for (i, p) in products.enumerated() where p.weight.rows > 0 {
        let groups = (p.weight.rows + 7) / 8, groupBytes = max(1, p.weight.byteCount / groups)
        let perTask = max(1, (rows > 1 ? min(taskBytes, 256 << 10) : taskBytes) / groupBytes)
        for g0 in stride(from: 0, to: groups, by: perTask) { tasks.append((i, g0, min(groups, g0 + perTask))) }
    }
    let descriptors = products.map(\.weight.descriptor), outs = products.map(\.out)
    descriptors.withUnsafeBufferPointer { ws in
        pool.parallelFor(tasks.count) { t in
            let task = tasks[t], w = ws.baseAddress! + task.product, out = outs[task.product], ldo = products[task.product].weight.rows
            switch path {
            case .avx512bf16, .avx512f, .avx2: banyan_qmatmul_avx2(w, a.q, a.d, a.dsum, a.sum16, rows, task.g0, task.g1, out, ldo)
            case .portable: banyan_qmatmul_portable(w, a.q, a.d, a.dsum, a.sum16, rows, task.g0, task.g1, out, ldo)
            }
        }
    }
}

/// Activation rows quantized per block of 32 as the integer kernels multiply them (quant.c:
/// `banyan_quantize_rows`, or its AVX2 twin with the same bits): q [rows, k] int8, d and dsum
/// [rows, k / 32], sum16 [rows, k / 16].
final class QuantizedActivations: @unchecked Sendable {
    let q: UnsafeMutablePointer<Int8>
    let d: UnsafeMutablePointer<Float>, dsum: UnsafeMutablePointer<Float>
    let sum16: UnsafeMutablePointer<Int16>

    init(_ x: UnsafePointer<Float>, rows: Int, k: Int, path: KernelPath, pool: ThreadPool) {
        let blocks = k / 32
        q = .allocate(capacity: rows * k)
        d = .allocate(capacity: rows * blocks); dsum = .allocate(capacity: rows * blocks)
        sum16 = .allocate(capacity: rows * blocks * 2)
        let (q, d, dsum, sum16) = (q, d, dsum, sum16)
        let quantize = path == .portable ? banyan_quantize_rows : banyan_quantize_rows_avx2
        let rowChunk = 16
        pool.parallelFor((rows + rowChunk - 1) / rowChunk) { t in
            let r0 = t * rowChunk, n = min(rowChunk, rows - r0)
            quantize(x + r0 * k, n, k, k, q + r0 * k, d + r0 * blocks, dsum + r0 * blocks, sum16 + r0 * blocks * 2)
        }
    }

    deinit { q.deallocate(); d.deallocate(); dsum.deallocate(); sum16.deallocate() }
}
