import Foundation
import BanyanKernels
import BanyanKV
import BanyanAttention

/// A loaded model: resolved config, weights, RoPE frequencies. `forward` is the whole network.
public final class Model: @unchecked Sendable {
    public let name: String
    public let config: ModelConfig
    public let weights: ModelWeights
    /// Folder the model came from (for `tokenizer.json`), nil for synthetic and GGUF models.
    public let folder: URL?
    /// The GGUF file the model came from (its metadata holds the tokenizer and chat template).
    public let gguf: GGUFFile?
    /// RoPE inverse frequencies `[headDim / 2]`, scaling applied, as transformers computes them.
    let inverseFrequencies: [Float]
    /// Activation precision inside the linear layers, fixed for the model's lifetime; see `defaultPrecision`.
    public let precision: Precision

    public init(name: String, config: ModelConfig, weights: ModelWeights, folder: URL? = nil, gguf: GGUFFile? = nil,
                precision: Precision? = nil) {
        self.name = name; self.config = config; self.weights = weights; self.folder = folder; self.gguf = gguf
        inverseFrequencies = Model.ropeInverseFrequencies(config)
        self.precision = precision ?? Model.defaultPrecision(weights: weights.dtype, quantized: weights.quantizedType != nil)
    }

    /// The same weights (shared, not copied) run at another precision.
    public func with(precision: Precision) -> Model {
        Model(name: name, config: config, weights: weights, folder: folder, gguf: gguf, precision: precision)
    }

    /// `fast` for 16-bit and quantized weights, as other engines run them (f16 KV; activations rounded
    /// to bf16 inside 16-bit products where that is faster, quantized to 8 bits per block of 32 against
    /// quantized weights); `exact` for float32 weights, whose users asked for float32.
    public static func defaultPrecision(weights dtype: DType, quantized: Bool = false) -> Precision {
        dtype == .f32 && !quantized ? .exact : .fast
    }

    /// Whether the linear layers run integer products against packed quantized weights: every
    /// precision but `exact`, which widens the quantized weights to float32 and keeps float32 activations.
    public var usesIntegerProducts: Bool { precision != .exact && weights.quantizedType != nil }

    /// Whether the linear layers run bf16 dot products (bf16 weights, a precision that asks for them
    /// and a CPU that has them).
    public var usesBF16Products: Bool {
        guard weights.dtype == .bf16 && KernelDispatch.fastMatmulAvailable else { return false }
        switch precision {
        case .exact: return false
        case .bf16: return true
        case .fast: return KernelDispatch.bf16ProductsFaster
        }
    }

    /// Loads `spec`: a Hugging Face folder, a `.gguf` file (llama.cpp's format; quantized tensors stay
    /// quantized), `synthetic:NAME` (optionally `synthetic:NAME:TYPE`, TYPE one of f32, f16, bf16,
    /// q8_0, q4_0, q5_0, q4_k, q6_k), or `builtin:stories260k` (the small trained model shipped with Banyan).
    /// `quantize` quantizes float weights at load (every matrix, llama.cpp's fallback type for rows
    /// that are not whole blocks).
    public static func load(_ spec: String, threads: ThreadPool, quantize: GGMLType? = nil) throws -> Model {
        let model = try loadStored(spec, threads: threads)
        guard let quantize else { return model }
        let weights = try model.weights.quantized(to: quantize, threads: threads, source: spec)
        return Model(name: spec, config: model.config, weights: weights, folder: model.folder, gguf: model.gguf)
    }

    private static func loadStored(_ spec: String, threads: ThreadPool) throws -> Model {
        if spec.hasPrefix("synthetic:") {
            let parts = spec.dropFirst("synthetic:".count).split(separator: ":").map(String.init)
            var dtype = DType.bf16, quantized: GGMLType? = nil
            if parts.count > 1 {
                let types = "f32|f16|bf16|" + Quantize.writable.map { $0.name.lowercased() }.joined(separator: "|")
                guard parts.count == 2 else {
                    throw ModelError.invalidInput("--model \(spec): expected synthetic:NAME or synthetic:NAME:\(types)")
                }
                if let d = DType(rawValue: parts[1]) { dtype = d }
                else if let q = GGMLType(writableName: parts[1]) { dtype = .f32; quantized = q }
                else { throw ModelError.invalidInput("--model \(spec): unknown type '\(parts[1])' (expected \(types))") }
            }
            var (config, weights) = try SyntheticModels.make(parts.first ?? "", dtype: dtype, threads: threads)
            if let quantized { weights = try weights.quantized(to: quantized, threads: threads, source: spec) }
            return Model(name: spec, config: config, weights: weights)
        }
        let folder: URL
        if spec.hasPrefix("builtin:") {
            let name = String(spec.dropFirst("builtin:".count))
            guard name == "stories260k", let url = Bundle.module.url(forResource: "Builtin/stories260k", withExtension: nil) else {
                throw ModelError.invalidInput("--model \(spec): unknown built-in model (builtin:stories260k)")
            }
            folder = url
        } else {
            folder = URL(fileURLWithPath: spec)
            var isDir: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: spec, isDirectory: &isDir)
            if exists && !isDir.boolValue {
                let file = try GGUFFile(path: spec)
                let config = try ModelConfig(gguf: file)
                let weights = try ModelWeights.load(gguf: file, config: config, threads: threads)
                return Model(name: spec, config: config, weights: weights, gguf: file)
            }
            guard exists, isDir.boolValue else {
                throw ModelError.io(path: spec, message: "not a model folder (expected config.json and *.safetensors, or synthetic:NAME)")
            }
        }
        let config = try ModelConfig.load(folder: folder)
        let checkpoint = try Checkpoint(folder: folder)
        let weights = try ModelWeights.load(checkpoint: checkpoint, config: config)
        return Model(name: spec, config: config, weights: weights, folder: folder)
    }

    static func ropeInverseFrequencies(_ c: ModelConfig) -> [Float] {
        let half = c.headDim / 2
        return (0..<half).map { i -> Float in
            let exponent = Float(2 * i) / Float(c.headDim)
            let base = Float(1) / Float(pow(c.ropeTheta, Double(exponent)))
            switch c.ropeScaling {
            case .none: return base
            case .linear(let factor): return base / Float(factor)
            case .frequencyFactors(let factors): return base / factors[i]
            case let .llama3(factor, low, high, original):
                let wavelength = 2 * Double.pi / Double(base)
                let lowWavelength = Double(original) / low, highWavelength = Double(original) / high
                if wavelength < highWavelength { return base }
                if wavelength > lowWavelength { return base / Float(factor) }
                let smooth = (Double(original) / wavelength - low) / (high - low)
                return Float((1 - smooth) * Double(base) / factor + smooth * Double(base))
            }
        }
    }
}

/// What one forward step computes: a token per row, where each row sits in the KV cache, and which
/// rows need logits (the last prompt row in prefill, every row in decode and scoring).
public struct StepInput: Sendable {
    public var tokens: [Int32]
    public var rows: [AttentionRow]
    public var logitRows: [Int]
    public init(tokens: [Int32], rows: [AttentionRow], logitRows: [Int]) {
        self.tokens = tokens; self.rows = rows; self.logitRows = logitRows
    }
}

/// Preallocated activations of a step (`[rows, ...]` float32), grown when a larger step comes.
public final class StepBuffers: @unchecked Sendable {
    let config: ModelConfig
    private(set) var rowCapacity = 0
    private(set) var logitCapacity = 0
    var x, xn, q, k, v, attn, gate, up: UnsafeMutablePointer<Float>
    var cosines, sines: UnsafeMutablePointer<Float>  // [rows, headDim / 2]
    var logitInput: UnsafeMutablePointer<Float>      // [logitRows, hidden]
    /// `[logitRows, vocab]` logits of the last step.
    public private(set) var logits: UnsafeMutablePointer<Float>
    let attentionScratch = AttentionScratch()

    public init(config: ModelConfig) {
        self.config = config
        x = .allocate(capacity: 1); xn = .allocate(capacity: 1); q = .allocate(capacity: 1); k = .allocate(capacity: 1)
        v = .allocate(capacity: 1); attn = .allocate(capacity: 1); gate = .allocate(capacity: 1); up = .allocate(capacity: 1)
        cosines = .allocate(capacity: 1); sines = .allocate(capacity: 1)
        logitInput = .allocate(capacity: 1); logits = .allocate(capacity: 1)
    }

    deinit { for p in [x, xn, q, k, v, attn, gate, up, cosines, sines, logitInput, logits] { p.deallocate() } }

    func reserve(rows: Int, logitRows: Int) {
        let c = config
        if rows > rowCapacity {
            for p in [x, xn, q, k, v, attn, gate, up, cosines, sines] { p.deallocate() }
            x = .allocate(capacity: rows * c.hiddenSize); xn = .allocate(capacity: rows * c.hiddenSize)
            q = .allocate(capacity: rows * c.qDim); attn = .allocate(capacity: rows * c.qDim)
            k = .allocate(capacity: rows * c.kvDim); v = .allocate(capacity: rows * c.kvDim)
            gate = .allocate(capacity: rows * c.intermediateSize); up = .allocate(capacity: rows * c.intermediateSize)
            cosines = .allocate(capacity: rows * c.headDim / 2); sines = .allocate(capacity: rows * c.headDim / 2)
            rowCapacity = rows
        }
        if logitRows > logitCapacity {
            logitInput.deallocate(); logits.deallocate()
            logitInput = .allocate(capacity: logitRows * c.hiddenSize)
            logits = .allocate(capacity: logitRows * c.vocabularySize)
            logitCapacity = logitRows
        }
    }
}

extension Model {
    /// One step of the network over `input.rows` (prefill rows of one or more sequences, or one decode
    /// row per sequence): writes each row's K/V into its KV block, attends over the plan, and leaves
    /// `[logitRows, vocab]` logits in `buffers.logits`. Activations and accumulation are float32.
    public func forward(_ input: StepInput, plan: AttentionPlan, kv: KVBlockPool,
                        buffers b: StepBuffers, threads: ThreadPool) {
        let c = config, w = weights
        let T = input.tokens.count, hidden = c.hiddenSize, D = c.headDim, half = D / 2
        let H = c.headCount, KVH = c.kvHeadCount, ffn = c.intermediateSize, C = kv.layout.blockTokenCount
        b.reserve(rows: T, logitRows: input.logitRows.count)
        let shape = AttentionShape(headCount: H, kvHeadCount: KVH, headDim: D)
        let queryScale = 1 / Float(D).squareRoot()
        let bf16Products = usesBF16Products, integerProducts = precision != .exact
        /// `out = x · Wᵀ` for the step's rows and each (W, out), in the chosen precision; integer products
        /// of one x quantize it once and share one dispatch (same bits as one call each).
        func linear(_ x: UnsafePointer<Float>, _ rows: Int, _ products: (WeightMatrix, UnsafeMutablePointer<Float>)...) {
            guard rows > 0 else { return }
            let packed = products.compactMap { p in p.0.packed.map { ($0, p.1) } }
            if integerProducts && packed.count == products.count {
                quantizedMatmul(x, rows: rows, products: packed, pool: threads)
                return
            }
            for (weight, out) in products {
                if integerProducts, let packed = weight.packed {
                    quantizedMatmul(x, rows: rows, weight: packed, out: out, pool: threads)
                } else if bf16Products && weight.dtype == .bf16 {
                    matmulFast(x, rows: rows, weight: weight, out: out, pool: threads)
                } else {
                    matmul(x, rows: rows, weight: weight, out: out, pool: threads)
                }
            }
        }

        // Embeddings and this step's RoPE angles (float32 products, as transformers computes them).
        for r in 0..<T {
            w.embedding.copyRow(Int(input.tokens[r]), into: b.x + r * hidden)
            let pos = Float(input.rows[r].position)
            for i in 0..<half {
                let angle = pos * inverseFrequencies[i]
                b.cosines[r * half + i] = cos(angle)
                b.sines[r * half + i] = sin(angle)
            }
        }

        for (l, layer) in w.layers.enumerated() {
            // Attention: norm, QKV (+bias), RoPE, KV write, attention over the plan, out-projection, residual.
            layer.attentionNorm.withUnsafeBufferPointer {
                Elementwise.rmsNorm(b.x, weight: $0.baseAddress!, out: b.xn, rows: T, dim: hidden, epsilon: c.rmsNormEpsilon)
            }
            linear(b.xn, T, (layer.wq, b.q), (layer.wk, b.k), (layer.wv, b.v))   // [T, H*D], [T, KVH*D] × 2
            if let bq = layer.bq, let bk = layer.bk, let bv = layer.bv {
                for r in 0..<T {
                    for i in 0..<c.qDim { b.q[r * c.qDim + i] += bq[i] }
                    for i in 0..<c.kvDim { b.k[r * c.kvDim + i] += bk[i]; b.v[r * c.kvDim + i] += bv[i] }
                }
            }
            if let qn = layer.qNorm, let kn = layer.kNorm {   // Qwen3: RMSNorm over each head, before RoPE
                qn.withUnsafeBufferPointer { Elementwise.rmsNorm(b.q, weight: $0.baseAddress!, out: b.q, rows: T * H, dim: D, epsilon: c.rmsNormEpsilon) }
                kn.withUnsafeBufferPointer { Elementwise.rmsNorm(b.k, weight: $0.baseAddress!, out: b.k, rows: T * KVH, dim: D, epsilon: c.rmsNormEpsilon) }
            }
            for r in 0..<T {
                let cs = b.cosines + r * half, sn = b.sines + r * half
                for h in 0..<H { Elementwise.rotateHalf(b.q + (r * H + h) * D, cos: cs, sin: sn, half: half, scale: queryScale) }
                for h in 0..<KVH { Elementwise.rotateHalf(b.k + (r * KVH + h) * D, cos: cs, sin: sn, half: half, scale: 1) }
                // K goes in transposed ([headDim, blockTokens]) so scores are vector FMAs over the block;
                // both are rounded to the KV dtype here (attention reads back exactly what is stored).
                let row = input.rows[r]
                let block = row.blocks[row.position / C], slot = row.position % C
                for h in 0..<KVH {
                    kv.store(key: b.k + (r * KVH + h) * D, value: b.v + (r * KVH + h) * D,
                             block: block, slot: slot, layer: l, kvHead: h)
                }
            }
            Attention.run(plan: plan, q: b.q, out: b.attn, kv: kv, layer: l, shape: shape,
                          scratch: b.attentionScratch, threads: threads)   // [T, H*D]
            linear(b.attn, T, (layer.wo, b.xn))
            Elementwise.add(b.x, b.xn, count: T * hidden)

            // MLP: norm, gate/up, SiLU·mul, down, residual.
            layer.mlpNorm.withUnsafeBufferPointer {
                Elementwise.rmsNorm(b.x, weight: $0.baseAddress!, out: b.xn, rows: T, dim: hidden, epsilon: c.rmsNormEpsilon)
            }
            linear(b.xn, T, (layer.wGate, b.gate), (layer.wUp, b.up))  // [T, ffn] × 2
            Elementwise.siluMultiply(b.gate, b.up, count: T * ffn)
            linear(b.gate, T, (layer.wDown, b.xn))  // [T, hidden]
            Elementwise.add(b.x, b.xn, count: T * hidden)
        }

        // Final norm and LM head, only for the rows whose logits are needed.
        for (i, r) in input.logitRows.enumerated() {
            w.finalNorm.withUnsafeBufferPointer {
                Elementwise.rmsNorm(b.x + r * hidden, weight: $0.baseAddress!, out: b.logitInput + i * hidden,
                                    rows: 1, dim: hidden, epsilon: c.rmsNormEpsilon)
            }
        }
        linear(b.logitInput, input.logitRows.count, (w.lmHead, b.logits))
    }
}

