import Foundation
import BanyanKernels
import BanyanKV
import BanyanAttention
import BanyanModel
import BanyanTokenizer

/// Errors of a request; each says what was wrong and with which numbers.
public enum EngineError: BanyanError {
    case invalidRequest(String)
    case contextExceeded(String)
    /// The waiting queue is full (HTTP 503).
    case overloaded(String)
    /// The engine is shutting down (HTTP 503).
    case unavailable(String)

    public var description: String {
        switch self {
        case .invalidRequest(let m), .contextExceeded(let m), .overloaded(let m), .unavailable(let m): return m
        }
    }
}

/// Engine-wide settings.
public struct EngineOptions: Sendable {
    public var threadCount: Int = ProcessInfo.processInfo.activeProcessorCount
    /// KV cache budget; the pool's memory is committed lazily, so a large budget costs nothing unused.
    public var maxKVBytes: Int = Int(ProcessInfo.processInfo.physicalMemory / 2)
    public var attention: AttentionMode = .hydragen
    /// Most sequences decoded in one step; more samples run in waves over the same pinned prefix.
    public var maxBatch: Int = 256
    /// Activation precision of the linear layers; nil keeps the model's (`exact` unless set).
    public var precision: Precision? = nil
    /// Most rows (tokens) one step computes: decode rows first, prefill chunks in what is left
    /// (vLLM's `max_num_batched_tokens`); longer prompts are prefilled over several steps.
    public var maxBatchedTokens: Int = 256
    /// Element type of the KV cache; nil picks `defaultKVDType(precision:)` for the model's precision.
    public var kvDType: DType? = nil
    public init() {}

    /// f32 under `exact` precision (conformance with transformers at 1e-4 needs unrounded K/V); f16
    /// under `fast`, as llama.cpp (half the KV memory and bandwidth; K/V rounded with relative error
    /// ≤ 2⁻¹¹, 8× finer than bf16; magnitudes past 65504 saturate, see `KVBlockPool.store`); bf16
    /// under `bf16`. `--kv-dtype` overrides any of them.
    public static func defaultKVDType(precision: Precision) -> DType {
        switch precision {
        case .exact: .f32
        case .fast: .f16
        case .bf16: .bf16
        }
    }
}

/// One sample's output.
public struct Completion: Sendable {
    public var index: Int
    public var suffixIndex: Int
    public var sampleIndex: Int
    public var tokens: [Int]
    /// Natural-log probability of each token under the model (before temperature and filters).
    public var logprobs: [Double]
    public var text: String?
    public var finishReason: FinishReason
    /// Top alternatives per token when asked for (`Request.topLogprobs`).
    public var topLogprobs: [[TokenLogprob]] = []
}

/// Everything `generate` returns.
public struct GenerateResult: Sendable {
    public var completions: [Completion]
    public var promptTokens: Int
    public var completionTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var decodeSteps: Int
    /// Peak bytes of KV blocks held during the request.
    public var kvPeakBytes: Int
}

/// One continuation's scores.
public struct ScoreResult: Sendable {
    public var tokens: [Int]
    public var logprobs: [Double]
    public var totalLogprob: Double { logprobs.reduce(0, +) }
}

/// Runs requests on one model: owns the thread pool, the KV cache and the step buffers.
/// Not reentrant: one request at a time.
public final class Engine: @unchecked Sendable {
    public let model: Model
    public let tokenizer: Tokenizer?
    public let threads: ThreadPool
    public let kv: KVCache
    public var options: EngineOptions
    let buffers: StepBuffers

    public init(model: Model, tokenizer: Tokenizer? = nil, threads: ThreadPool, options: EngineOptions = EngineOptions()) throws {
        // Numeric settings are fixed for the engine's lifetime; another precision is another Model
        // value over the same weights, so engines sharing a model never change each other's math.
        let model = options.precision.map { model.with(precision: $0) } ?? model
        self.model = model
        self.tokenizer = tokenizer
        self.threads = threads
        self.options = options
        let c = model.config
        let layout = KVLayout(layerCount: c.layerCount, kvHeadCount: c.kvHeadCount, headDim: c.headDim,
                              dtype: options.kvDType ?? EngineOptions.defaultKVDType(precision: model.precision))
        kv = KVCache(pool: try KVBlockPool(layout: layout, budgetBytes: options.maxKVBytes))
        buffers = StepBuffers(config: c)
    }

    public var config: ModelConfig { model.config }

    /// Encodes prompt text as transformers does: the tokenizer's post-processor when it has one;
    /// otherwise BOS is prepended when `tokenizer_config.json` says `add_bos_token` (Llama and
    /// Mistral tokenizers default to true, Qwen2's to false).
    public func encodePrompt(_ text: String) throws -> [Int] {
        guard let tok = tokenizer else {
            throw EngineError.invalidRequest("text prompts need a tokenizer and \(model.name) has none: give token ids")
        }
        var ids = tok.encode(text, addSpecialTokens: true)
        if tok.bosTokenID == nil, addsBOS, let bos = config.bosTokenID, ids.first != bos { ids.insert(bos, at: 0) }
        return ids
    }

    /// Whether text prompts start with BOS when the tokenizer has no post-processor. A GGUF
    /// tokenizer's post-processor adds BOS exactly when the file says so.
    var addsBOS: Bool {
        if model.gguf != nil { return false }
        if let folder = model.folder,
           let data = FileManager.default.contents(atPath: folder.appendingPathComponent("tokenizer_config.json").path),
           let flag = JSONValue.parse(data)?["add_bos_token"]?.boolValue {
            return flag
        }
        return config.architecture != .qwen2 && config.architecture != .qwen3
    }

    // MARK: - Validation

    func validate(tokens: [Int], what: String) throws {
        for t in tokens where t < 0 || t >= config.vocabularySize {
            throw EngineError.invalidRequest("\(what): token id \(t) out of range (vocabulary size \(config.vocabularySize))")
        }
    }

    /// Refuses contexts the model cannot attend over exactly (no silent truncation).
    func validateContext(_ length: Int, what: String) throws {
        if length > config.maxPositionCount {
            throw EngineError.contextExceeded("\(what): \(length) tokens exceed the model's context of \(config.maxPositionCount) tokens")
        }
        if let window = config.slidingWindow, length > window {
            throw EngineError.contextExceeded("\(what): \(length) tokens exceed the sliding window of \(window) tokens (config.json sliding_window); Banyan computes full attention only and refuses rather than diverge")
        }
    }

    // MARK: - Steps

    /// Runs one forward step over `rows` (each row one token of a sequence, positions already appended
    /// in the KV cache) and returns the logits of `logitRows`.
    /// The one step driver (rows → `AttentionPlan` → `Model.forward` → logits): the scheduler and
    /// the benchmarks run every model step through it. `attention` overrides the engine's mode (benchmarks).
    public func step(tokens: [Int32], sequences: [SequenceID], positions: [Int], logitRows: [Int],
                     attention: AttentionMode? = nil) -> UnsafeMutablePointer<Float> {
        var rows: [AttentionRow] = []
        rows.reserveCapacity(tokens.count)
        var tables: [SequenceID: [BlockID]] = [:]
        for (s, p) in zip(sequences, positions) {
            let blocks = tables[s] ?? kv.blocks(s)
            tables[s] = blocks
            rows.append(AttentionRow(sequence: s, blocks: blocks, position: p))
        }
        let plan = AttentionPlan(rows: rows, blockTokenCount: kv.layout.blockTokenCount, mode: attention ?? options.attention)
        model.forward(StepInput(tokens: tokens, rows: rows, logitRows: logitRows), plan: plan, kv: kv.pool,
                      buffers: buffers, threads: threads)
        return buffers.logits
    }
}
