import Foundation
import BanyanKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Random-weight models with the exact shapes of real ones, for benchmarks and tests
/// (`synthetic:NAME`). Weights ~ N(0, 0.02), norms 1, seeded and independent of the thread count.
public enum SyntheticModels {
    /// Known shapes. Vocab/context/theta as in each model's published config.json.
    public static let shapes: [String: ModelConfig] = [
        "tinyllama-1.1b": ModelConfig(architecture: .llama, hiddenSize: 2048, layerCount: 22, headCount: 32, kvHeadCount: 4,
                                      intermediateSize: 5632, vocabularySize: 32000, maxPositionCount: 2048),
        "sheared-llama-1.3b": ModelConfig(architecture: .llama, hiddenSize: 2048, layerCount: 24, headCount: 16, kvHeadCount: 16,
                                          intermediateSize: 5504, vocabularySize: 32000, maxPositionCount: 4096),
        "smollm2-135m": ModelConfig(architecture: .llama, hiddenSize: 576, layerCount: 30, headCount: 9, kvHeadCount: 3,
                                    intermediateSize: 1536, vocabularySize: 49152, maxPositionCount: 8192, ropeTheta: 100000,
                                    tieWordEmbeddings: true, bosTokenID: 0, eosTokenIDs: [0]),
        "llama2-7b": ModelConfig(architecture: .llama, hiddenSize: 4096, layerCount: 32, headCount: 32, kvHeadCount: 32,
                                 intermediateSize: 11008, vocabularySize: 32000, maxPositionCount: 4096),
        "codellama-7b": ModelConfig(architecture: .llama, hiddenSize: 4096, layerCount: 32, headCount: 32, kvHeadCount: 32,
                                    intermediateSize: 11008, vocabularySize: 32016, maxPositionCount: 16384, ropeTheta: 1_000_000),
        // A few-megabyte model for tests of the engine and the benchmark harness.
        "tiny": ModelConfig(architecture: .llama, hiddenSize: 128, layerCount: 2, headCount: 4, kvHeadCount: 2,
                            intermediateSize: 256, vocabularySize: 512, maxPositionCount: 4096),
    ]

    /// Builds `name` with weights in `dtype`, filled by `threads`.
    public static func make(_ name: String, dtype: DType = .bf16, seed: UInt64 = 0, threads: ThreadPool) throws
        -> (ModelConfig, ModelWeights) {
        guard let config = shapes[name] else { throw ModelError.unknownSynthetic(name, known: shapes.keys.sorted()) }
        let c = config
        // One buffer for every matrix; each matrix filled from its own seed so layout changes nothing.
        var sizes: [(rows: Int, cols: Int)] = [(c.vocabularySize, c.hiddenSize)]
        for _ in 0..<c.layerCount {
            sizes += [(c.qDim, c.hiddenSize), (c.kvDim, c.hiddenSize), (c.kvDim, c.hiddenSize), (c.hiddenSize, c.qDim),
                      (c.intermediateSize, c.hiddenSize), (c.intermediateSize, c.hiddenSize), (c.hiddenSize, c.intermediateSize)]
        }
        if !c.tieWordEmbeddings { sizes.append((c.vocabularySize, c.hiddenSize)) }
        let total = sizes.reduce(0) { $0 + $1.rows * $1.cols } * dtype.byteCount
        let buffer = SyntheticBuffer(byteCount: total)
        var matrices: [WeightMatrix] = []
        var offset = 0
        for (i, s) in sizes.enumerated() {
            let m = WeightMatrix(dtype: dtype, rows: s.rows, cols: s.cols, base: UnsafeRawPointer(buffer.base + offset))
            fill(m, seed: seed &* 1_000_003 &+ UInt64(i), threads: threads)
            matrices.append(m)
            offset += s.rows * s.cols * dtype.byteCount
        }
        let ones = [Float](repeating: 1, count: c.hiddenSize)
        var layers: [LayerWeights] = []
        for l in 0..<c.layerCount {
            let m = matrices[1 + 7 * l ..< 8 + 7 * l].map { $0 }
            layers.append(LayerWeights(attentionNorm: ones, wq: m[0], wk: m[1], wv: m[2], wo: m[3], bq: nil, bk: nil, bv: nil,
                                       mlpNorm: ones, wGate: m[4], wUp: m[5], wDown: m[6]))
        }
        let weights = ModelWeights(embedding: matrices[0], layers: layers, finalNorm: ones,
                                   lmHead: c.tieWordEmbeddings ? matrices[0] : matrices.last!, owners: [buffer])
        return (config, weights)
    }

    /// N(0, 0.02) at 16-bit resolution: entry i is the normal quantile of (i + 0.5) / 65536, so one
    /// 64-bit random number gives four exact inverse-CDF draws.
    static let normalTable: [Float] = (0..<65536).map { i in Float(0.02 * normalQuantile((Double(i) + 0.5) / 65536)) }

    /// Fills in chunks of 64K elements, each from its own generator, so any thread count gives the same bits.
    static func fill(_ m: WeightMatrix, seed: UInt64, threads: ThreadPool) {
        let count = m.rows * m.cols
        let chunk = 1 << 16
        let chunks = (count + chunk - 1) / chunk
        let base = UnsafeMutableRawPointer(mutating: m.base)
        let dtype = m.dtype
        normalTable.withUnsafeBufferPointer { table in
            threads.parallelFor(chunks) { c in
                var rng = SplitMix64(seed: seed ^ (UInt64(c) &* 0x9E37_79B9_7F4A_7C15))
                let end = min(count, (c + 1) * chunk)
                var i = c * chunk
                while i < end {
                    let z = rng.next()
                    for lane in 0..<min(4, end - i) {
                        let v = table[Int((z >> (16 * UInt64(lane))) & 0xFFFF)]
                        switch dtype {
                        case .f32: base.storeBytes(of: v, toByteOffset: (i + lane) * 4, as: Float.self)
                        case .bf16: base.storeBytes(of: floatToBF16(v), toByteOffset: (i + lane) * 2, as: UInt16.self)
                        case .f16: base.storeBytes(of: floatToF16(v), toByteOffset: (i + lane) * 2, as: UInt16.self)
                        }
                    }
                    i += 4
                }
            }
        }
    }

    /// Inverse of the standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9).
    static func normalQuantile(_ p: Double) -> Double {
        let a = [-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00]
        let b = [-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01]
        let c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00]
        let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
        func tail(_ q: Double) -> Double {
            (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        }
        if p < 0.02425 { return tail((-2 * log(p)).squareRoot()) }
        if p > 1 - 0.02425 { return -tail((-2 * log(1 - p)).squareRoot()) }
        let q = p - 0.5, r = q * q
        return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    }
}

/// Anonymous memory holding a synthetic model's weights.
final class SyntheticBuffer: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let byteCount: Int
    init(byteCount: Int) {
        self.byteCount = max(byteCount, 1)
        let p = mmap(nil, self.byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        precondition(p != nil && p != MAP_FAILED, "cannot reserve \(byteCount) bytes for synthetic weights")
        base = p!
    }
    deinit { munmap(base, byteCount) }
}
