import ArgumentParser
import Foundation
import BanyanKernels
import BanyanAttention
import BanyanModel
import BanyanEngine
import BanyanTokenizer

@main
struct Banyan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "banyan",
        abstract: "Batched LLM inference with exact shared-prefix (Hydragen) attention.",
        subcommands: [Generate.self, Chat.self, Score.self, Info.self, Tokenize.self, Detokenize.self, Bench.self, Batch.self, Serve.self])
}

extension AttentionMode: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}
extension DType: ExpressibleByArgument {}

/// Flags every model-running command shares.
struct ModelOptions: ParsableArguments {
    @Option(help: "A Hugging Face model folder, a .gguf file, synthetic:NAME[:f32|f16|bf16|q8_0|q4_0|q5_0|q4_k|q6_k], or builtin:stories260k.")
    var model: String = "builtin:stories260k"

    @Option(help: "Quantize float weights at load: q8_0, q4_0, q5_0, q4_k or q6_k (rows not a whole number of Q4_K or Q6_K blocks fall back to q5_0 or q8_0, as llama.cpp does).")
    var quantize: String?

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "KV cache budget in bytes (default: half the machine's memory).")
    var maxKVBytes: Int?

    @Option(help: "Attention over the KV cache: hydragen, baseline or none (none is a benchmark bound; its output is meaningless).")
    var attention: AttentionMode = .hydragen

    @Option(help: "A tokenizer.json (or folder, or .gguf file) to use instead of the model's.")
    var tokenizer: String?

    @Option(help: "Linear-layer activations: exact (float32 through every product; quantized weights widened to float32), bf16 (rounded to bf16 inside products with bf16 weights, on CPUs with AVX512_BF16) or fast (whichever of the two is faster on this CPU; `banyan info` shows which). Against quantized weights, fast and bf16 quantize activations to 8 bits per block of 32 and run integer products. Default: fast for 16-bit and quantized weights, exact for f32.")
    var precision: Precision?

    @Option(help: "KV cache element type: f32, bf16 or f16 (default: f32 under --precision exact, f16 under fast, bf16 under bf16).")
    var kvDtype: DType?

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if let q = quantize, GGMLType(writableName: q) == nil {
            throw ValidationError("--quantize: unknown type '\(q)' (expected q8_0, q4_0, q5_0, q4_k or q6_k)")
        }
        if let b = maxKVBytes, b <= 0 { throw ValidationError("--max-kv-bytes must be positive, got \(b)") }
    }

    /// The model, quantized at load when asked.
    func loadModel(_ pool: ThreadPool) throws -> Model {
        try Model.load(model, threads: pool, quantize: quantize.flatMap(GGMLType.init(writableName:)))
    }

    /// Loads the model, its tokenizer (if any) and an engine.
    func makeEngine() throws -> Engine {
        let pool = ThreadPool(threadCount: threads)
        let model = try loadModel(pool)
        var tok: Tokenizer? = nil
        if let path = tokenizer {
            tok = try Tokenizer.load(fileOrGGUF: path)
        } else if let folder = model.folder, FileManager.default.fileExists(atPath: folder.appendingPathComponent("tokenizer.json").path) {
            tok = try Tokenizer.load(path: folder.path)
        } else if let gguf = model.gguf {
            tok = try Tokenizer.load(gguf: gguf)
        }
        var options = EngineOptions()
        options.threadCount = threads
        options.attention = attention
        options.precision = precision
        options.kvDType = kvDtype
        if let b = maxKVBytes { options.maxKVBytes = b }
        return try Engine(model: model, tokenizer: tok, threads: pool, options: options)
    }
}

/// An error found while a command runs (after flag parsing): printed as one line, exit status 1.
struct CLIError: BanyanError {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The sampling flags `generate` and `chat` share, checked with the flag's name in the message.
func validateSamplingFlags(maxTokens: Int, temperature: Float, topK: Int = 0, topP: Float, minP: Float = 0) throws {
    guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1, got \(maxTokens)") }
    guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be ≥ 0, got \(temperature)") }
    guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0, got \(topK)") }
    guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1], got \(topP)") }
    guard minP >= 0, minP <= 1 else { throw ValidationError("--min-p must be in [0, 1], got \(minP)") }
}

/// Parses `1,2,3` token lists.
func parseTokenList(_ s: String, flag: String) throws -> [Int] {
    let parts = s.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    guard !s.isEmpty else { throw CLIError("\(flag): empty token list") }
    return try parts.map { p in
        guard let v = Int(p) else { throw CLIError("\(flag): \"\(p)\" is not a token id (expected e.g. 1,2,3)") }
        return v
    }
}

/// A prompt given as text (needs a tokenizer; BOS added as the tokenizer's post-processor says) or as ids.
func resolvePrompt(text: String?, tokens: String?, engine: Engine, flag: String) throws -> [Int] {
    switch (text, tokens) {
    case (let t?, nil):
        guard engine.tokenizer != nil else {
            throw CLIError("--\(flag) needs a tokenizer and \(engine.model.name) has none: pass --\(flag)-tokens 1,2,3 or --tokenizer PATH")
        }
        return try engine.encodePrompt(t)
    case (nil, let ids?):
        return try parseTokenList(ids, flag: "--\(flag)-tokens")
    case (nil, nil):
        throw CLIError("give --\(flag) TEXT or --\(flag)-tokens 1,2,3")
    default:
        throw CLIError("give only one of --\(flag) and --\(flag)-tokens")
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate completions of a prompt.")

    @OptionGroup var options: ModelOptions
    @Option(help: "Prompt text (needs a tokenizer).") var prompt: String?
    @Option(help: "Prompt as token ids, e.g. 1,2,3.") var promptTokens: String?
    @Option(help: "A second-level prompt appended to the shared prompt (repeatable): N samples of each.") var suffix: [String] = []
    @Option(help: "A second-level prompt as token ids (repeatable).") var suffixTokens: [String] = []
    @Option(help: "Samples per prompt (+ suffix).") var n: Int = 1
    @Option(help: "Most tokens to generate per sample.") var maxTokens: Int = 64
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 1
    @Option(help: "Keep the K most likely tokens (0: off).") var topK: Int = 0
    @Option(help: "Nucleus sampling mass (1: off).") var topP: Float = 1
    @Option(help: "Drop tokens less likely than P times the best (0: off).") var minP: Float = 0
    @Option(help: "Random seed; sample i draws from its own stream of (seed, i).") var seed: UInt64 = 0
    @Option(help: "Stop when the text contains this string (repeatable; not included in the output).") var stop: [String] = []
    @Option(help: "Stop on these token ids, e.g. 13,29889.") var stopTokenIds: String?
    @Flag(help: "Do not stop at the end-of-sequence token.") var ignoreEos = false
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard n >= 1 else { throw ValidationError("--n must be at least 1, got \(n)") }
        try validateSamplingFlags(maxTokens: maxTokens, temperature: temperature, topK: topK, topP: topP, minP: minP)
        guard suffix.isEmpty || suffixTokens.isEmpty else { throw ValidationError("give --suffix or --suffix-tokens, not both") }
        guard stop.allSatisfy({ !$0.isEmpty }) else { throw ValidationError("--stop: empty stop string") }
    }

    func run() throws {
        let engine = try options.makeEngine()
        var request = Request(prompt: try resolvePrompt(text: prompt, tokens: promptTokens, engine: engine, flag: "prompt"))
        var suffixes: [[Int]] = []
        if !suffixTokens.isEmpty {
            suffixes = try suffixTokens.map { try parseTokenList($0, flag: "--suffix-tokens") }
        } else if !suffix.isEmpty {
            guard let tok = engine.tokenizer else { throw CLIError("--suffix needs a tokenizer; use --suffix-tokens") }
            suffixes = suffix.map { tok.encode($0, addSpecialTokens: false) }
        }
        request.n = n
        request.maxTokens = maxTokens
        request.sampling = SamplingParameters(temperature: temperature, topK: topK, topP: topP, minP: minP, seed: seed)
        request.stopStrings = stop
        if let s = stopTokenIds { request.stopTokenIDs = Set(try parseTokenList(s, flag: "--stop-token-ids")) }
        request.ignoreEOS = ignoreEos
        let result = try engine.generate(request, suffixes: suffixes)
        let tokensPerSecond = result.decodeSeconds > 0 ? Double(result.completionTokens) / result.decodeSeconds : 0
        if json {
            let completions: [JSON] = result.completions.map { c in
                .object([("index", .int(c.index)), ("suffix_index", .int(c.suffixIndex)), ("sample_index", .int(c.sampleIndex)),
                         ("tokens", .ints(c.tokens)), ("text", .optionalString(c.text)),
                         ("finish_reason", .string(c.finishReason.rawValue)), ("logprobs", .doubles(c.logprobs))])
            }
            let out = JSON.object([
                ("completions", .array(completions)),
                ("usage", .object([("prompt_tokens", .int(result.promptTokens)), ("completion_tokens", .int(result.completionTokens)),
                                   ("kv_bytes", .int(result.kvPeakBytes))])),
                ("timing", .object([("prefill_s", .double(result.prefillSeconds)), ("decode_s", .double(result.decodeSeconds)),
                                    ("decode_tokens_per_s", .double(tokensPerSecond))])),
                ("attention", .string(options.attention.rawValue)),
                ("kv_dtype", .string(engine.kv.layout.dtype.rawValue)),
            ])
            print(out.rendered)
        } else {
            for c in result.completions {
                let head = result.completions.count > 1 ? "[\(c.index)] " : ""
                print(head + (c.text ?? c.tokens.map(String.init).joined(separator: " ")))
            }
            FileHandle.standardError.write(Data(String(format: "%d prompt + %d generated tokens; prefill %.3f s, decode %.3f s (%.1f tokens/s); finish: %@\n",
                result.promptTokens, result.completionTokens, result.prefillSeconds, result.decodeSeconds, tokensPerSecond,
                Set(result.completions.map(\.finishReason.rawValue)).sorted().joined(separator: ",")).utf8))
        }
    }
}

struct Score: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Log-probabilities of continuations of one prompt (prompt computed once).")

    @OptionGroup var options: ModelOptions
    @Option(help: "Prompt text (needs a tokenizer).") var prompt: String?
    @Option(help: "Prompt as token ids.") var promptTokens: String?
    @Option(help: "A continuation to score (repeatable).") var continuation: [String] = []
    @Option(help: "A continuation as token ids (repeatable).") var continuationTokens: [String] = []
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard continuation.isEmpty != continuationTokens.isEmpty else {
            throw ValidationError("give one or more --continuation TEXT or --continuation-tokens 4,5,6 (not both)")
        }
    }

    func run() throws {
        let engine = try options.makeEngine()
        let promptIDs = try resolvePrompt(text: prompt, tokens: promptTokens, engine: engine, flag: "prompt")
        let conts: [[Int]]
        if !continuationTokens.isEmpty {
            conts = try continuationTokens.map { try parseTokenList($0, flag: "--continuation-tokens") }
        } else {
            guard let tok = engine.tokenizer else { throw CLIError("--continuation needs a tokenizer; use --continuation-tokens") }
            conts = continuation.map { tok.encode($0, addSpecialTokens: false) }
        }
        let (scores, kvBytes) = try engine.score(prompt: promptIDs, continuations: conts)
        if json {
            let entries: [JSON] = scores.map { s in
                .object([("tokens", .ints(s.tokens)), ("logprobs", .doubles(s.logprobs)), ("total_logprob", .double(s.totalLogprob))])
            }
            print(JSON.object([("scores", .array(entries)), ("usage", .object([("prompt_tokens", .int(promptIDs.count)), ("kv_bytes", .int(kvBytes))]))]).rendered)
        } else {
            for (i, s) in scores.enumerated() {
                print(String(format: "[%d] total %.6f  (%d tokens; per token: %@)", i, s.totalLogprob, s.tokens.count,
                             s.logprobs.map { String(format: "%.4f", $0) }.joined(separator: " ")))
            }
        }
    }
}

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Shape, size and KV cost of a model.")

    @OptionGroup var options: ModelOptions
    @Flag(help: "Print one JSON object.") var json = false

    func run() throws {
        let pool = ThreadPool(threadCount: options.threads)
        let loaded = try options.loadModel(pool)
        let model = options.precision.map { loaded.with(precision: $0) } ?? loaded
        let c = model.config
        let kvDType = options.kvDtype ?? EngineOptions.defaultKVDType(precision: model.precision)
        let fields: [(String, JSON)] = [
            ("model", .string(model.name)), ("architecture", .string(c.architecture.rawValue)),
            // Quantized models report their (commonest) ggml type, e.g. "Q4_K"; float ones f32/f16/bf16.
            ("dtype", .string(model.weights.quantizedType?.name ?? model.weights.dtype.rawValue)),
            ("hidden_size", .int(c.hiddenSize)), ("layers", .int(c.layerCount)), ("heads", .int(c.headCount)),
            ("kv_heads", .int(c.kvHeadCount)), ("head_dim", .int(c.headDim)), ("intermediate_size", .int(c.intermediateSize)),
            ("vocab_size", .int(c.vocabularySize)), ("context", .int(c.maxPositionCount)),
            ("parameters", .int(c.parameterCount)), ("weight_bytes", .int(model.weights.byteCount)),
            ("kv_dtype", .string(kvDType.rawValue)), ("kv_bytes_per_token", .int(c.kvBytesPerToken(dtype: kvDType))),
            ("kernels", .string(KernelDispatch.description)), ("threads", .int(pool.threadCount)),
            ("precision", .string(model.precision.rawValue)), ("bf16_products", .bool(model.usesBF16Products)),
            ("quantization", model.weights.quantizedType.map { .string($0.name) } ?? .null),
            ("tensor_types", .object(model.weights.tensorTypeCounts.map { ($0.key, .int($0.value)) })),
            ("integer_products", .bool(model.usesIntegerProducts)),
        ]
        if json {
            print(JSON.object(fields).rendered)
        } else {
            for (k, v) in fields {
                if case .string(let s) = v { print("\(k): \(s)") } else { print("\(k): \(v.rendered)") }
            }
        }
    }
}
