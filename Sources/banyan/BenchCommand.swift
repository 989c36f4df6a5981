import ArgumentParser
import Foundation
import BanyanKernels
import BanyanAttention
import BanyanBench

extension Suite: ExpressibleByArgument {}
extension ServeArrival: ExpressibleByArgument {}

/// `banyan bench`: the paper's experiments and the engine's microbenchmarks on this machine.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: hydragen vs baseline vs no attention, kernels, model rooflines.",
        discussion: """
        banyan bench [SUITE] [--quick]   SUITE: throughput, prefix-length, attention, hierarchy, long-document,
                                          default (a tour), all (all five at full size: the documented full run)
        banyan bench decode|attention|kernels|model ...   single measurements (see --help of each)
        banyan bench serve --url http://127.0.0.1:PORT   load on a running OpenAI-compatible server
        """,
        subcommands: [BenchSuites.self, BenchDecode.self, BenchAttention.self, BenchKernels.self, BenchModel.self, BenchServe.self],
        defaultSubcommand: BenchSuites.self)
}

/// Flags every bench command shares.
struct BenchOptions: ParsableArguments {
    @Option(help: "Model: synthetic:NAME or a Hugging Face folder (default depends on the suite).") var model: String?
    @Option(help: "Worker threads (default: all cores).") var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @Option(help: "KV cache budget in bytes (default: half the machine's memory).") var maxKVBytes: Int?
    @Option(help: "Folder for report.json, tables.txt and one SVG plot per suite.") var out: String?
    @Option(help: "Repeats of each point (default depends on the suite and --quick).") var repeats: Int?
    @Flag(help: "Print the whole report as JSON on stdout instead of tables.") var json = false
    @Flag(help: "Small sizes: finishes in under 3 minutes on 2 cores.") var quick = false

    func validate() throws {
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if let b = maxKVBytes, b <= 0 { throw ValidationError("--max-kv-bytes must be positive, got \(b)") }
        if let r = repeats, r < 1 { throw ValidationError("--repeats must be at least 1, got \(r)") }
    }

    var kvBudget: Int { maxKVBytes ?? Int(ProcessInfo.processInfo.physicalMemory / 2) }

    /// Measures the machine, runs `body` (which prints each suite's table as it finishes unless
    /// --json), then writes --out and prints JSON.
    func session(_ body: (ThreadPool, MachineDescription, (SuiteReport) -> Void) throws -> [SuiteReport]) throws {
        let start = DispatchTime.now()
        let pool = ThreadPool(threadCount: threads)
        if !json { print(BenchOutput.introduction) }
        let machine = MachineDescription.measure(threads: pool)
        if !json { print("machine: \(machine.summary)\n") }
        let suites = try body(pool, machine) { suite in
            if !json { print(suite.rendered()); fflush(nil) }
        }
        var report = BenchReport(command: CommandLine.arguments, quick: quick, machine: machine, suites: suites,
                                 wallSeconds: Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9)
        if let out {
            let files = try BenchOutput.write(&report, to: out)
            if !json { print("wrote " + files.joined(separator: ", ")) }
        }
        if json { print(String(decoding: try report.jsonData(), as: UTF8.self)) }
        else { print(String(format: "total %.0f s", report.wallSeconds)) }
    }
}

/// Parses `1,8,32` lists.
func parseIntList(_ s: String, flag: String) throws -> [Int] {
    let parts = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.compactMap { Int($0) }
    guard !parts.isEmpty, values.count == parts.count, values.allSatisfy({ $0 >= 0 }) else {
        throw ValidationError("\(flag): expected a comma-separated list of non-negative integers, got \"\(s)\"")
    }
    return values
}

struct BenchSuites: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "suite", abstract: "The paper's experiments (default: a short tour of all five).")

    @Argument(help: "throughput, prefix-length, attention, hierarchy, long-document, default (a tour of all five), or all (all five at full size).")
    var suite: Suite = .tour
    @OptionGroup var options: BenchOptions

    func run() throws {
        var sizes = options.quick ? SuiteSizes.quick : (suite == .tour ? SuiteSizes.tour : SuiteSizes.full)
        if let m = options.model { sizes.model = m }
        if let r = options.repeats { sizes.repeats = r }
        let suites = suite == .tour || suite == .all ? Suite.experiments : [suite]
        try options.session { pool, machine, emit in
            let runner = try SuiteRunner(sizes: sizes, threads: pool, maxKVBytes: options.kvBudget, showProgress: true, suites: suites)
            runner.matmulPeakGFLOPs = machine.peakGFLOPs
            defer { runner.progress.finish() }
            var reports: [SuiteReport] = []
            for s in suites {
                let r = try runner.run(s)
                emit(r)
                reports.append(r)
            }
            if !options.json, suite == .tour, let line = reports.first?.summary.first {
                print("In short: \(line) The shared prompt's KV is read once per step instead of once per sequence; the gap grows with batch size and prefix length.")
            }
            return reports
        }
    }
}

struct BenchDecode: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "decode", abstract: "Decode tokens/s of N samples of one prompt, per attention mode (Engine.generate).")

    @OptionGroup var options: BenchOptions
    @Option(help: "Prompt length in tokens.") var prefix: Int = 2048
    @Option(help: "Batch sizes (samples of the prompt), e.g. 1,8,32,64.") var batch: String = "1,8,32,64"
    @Option(help: "Tokens generated per sample.") var gen: Int = 32
    @Option(help: "Attention modes to compare, e.g. hydragen,baseline,none.") var attention: String = "hydragen,baseline,none"
    @Option(help: "Sampling temperature (0: greedy); every sample decodes --gen tokens.") var temperature: Float = 0
    @Flag(help: "Prefill the prompt once and time greedy decode of forks of it in every mode (the throughput suite's method) instead of one Engine.generate per point.")
    var prefillOnce = false

    func run() throws {
        let modes = try attention.split(separator: ",").map { s -> AttentionMode in
            guard let m = AttentionMode(rawValue: s.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--attention: \"\(s)\" is not a mode (hydragen, baseline, none)")
            }
            return m
        }
        let cfg = DecodeBenchConfig(model: options.model ?? "synthetic:sheared-llama-1.3b", prefix: prefix,
                                    batches: try parseIntList(batch, flag: "--batch"), gen: gen, modes: modes,
                                    repeats: options.repeats ?? 1, maxKVBytes: options.kvBudget, temperature: temperature)
        try cfg.validate()
        if prefillOnce {
            var sizes = SuiteSizes.quick
            sizes.model = cfg.model
            sizes.throughputPrefix = cfg.prefix; sizes.throughputGen = cfg.gen; sizes.throughputBatches = cfg.batches
            sizes.repeats = cfg.repeats
            try options.session { pool, _, emit in
                let runner = try SuiteRunner(sizes: sizes, threads: pool, maxKVBytes: options.kvBudget, showProgress: true,
                                             suites: [.throughput], modes: modes)
                defer { runner.progress.finish() }
                let r = try runner.run(.throughput)
                emit(r)
                return [r]
            }
            return
        }
        try options.session { pool, _, emit in
            let progress = ProgressLine(total: cfg.batches.count * cfg.modes.count * cfg.repeats, enabled: true)
            defer { progress.finish() }
            let r = try EngineBench.decode(cfg, threads: pool, progress: progress)
            emit(r)
            return [r]
        }
    }
}

struct BenchAttention: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "attention",
        abstract: "Attention-only microbenchmark (Attention.run): hydragen vs baseline. Without --batch/--prefix: the suite's grid.")

    @OptionGroup var options: BenchOptions
    @Option(help: "Sequences sharing the prefix (list allowed: 1,8,64).") var batch: String?
    @Option(help: "Shared prefix tokens (list allowed).") var prefix: String?
    @Option(help: "Private tokens per sequence (list allowed).") var suffix: String?
    @Option(help: "Query heads (default: the model's).") var heads: Int?
    @Option(help: "KV heads (default: the model's).") var kvHeads: Int?
    @Option(help: "Head dimension (default: the model's).") var headDim: Int?
    @Option(help: "KV element type: f32, bf16 or f16 (default: the engine's for the model, f16 for 16-bit and quantized weights).") var kvDtype: DType?

    func run() throws {
        var sizes = options.quick ? SuiteSizes.quick : SuiteSizes.full
        if let m = options.model { sizes.model = m }
        if let r = options.repeats { sizes.repeats = r }
        if let b = batch { sizes.attentionBatches = try parseIntList(b, flag: "--batch") }
        if let p = prefix { sizes.attentionPrefixes = try parseIntList(p, flag: "--prefix") }
        if let s = suffix { sizes.attentionSuffixes = try parseIntList(s, flag: "--suffix") }
        let shape = (heads, kvHeads, headDim)
        try options.session { pool, machine, emit in
            let runner = try SuiteRunner(sizes: sizes, threads: pool, maxKVBytes: options.kvBudget, showProgress: true, suites: [.attention])
            runner.matmulPeakGFLOPs = machine.peakGFLOPs
            defer { runner.progress.finish() }
            let r = try runner.attention(heads: shape.0, kvHeads: shape.1, headDim: shape.2, kvDType: kvDtype)
            emit(r)
            return [r]
        }
    }
}

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kernels",
        abstract: "Matmul GFLOP/s and GB/s for tinyllama-1.1b's shapes (bf16 weights) beside the measured bandwidth and peak.")

    @OptionGroup var options: BenchOptions
    @Option(help: "Rows M (tokens in a step), e.g. 1,8,64,512.") var m: String = "1,8,64,512"

    func run() throws {
        let rows = try parseIntList(m, flag: "--m").filter { $0 > 0 }
        try options.session { pool, machine, emit in
            let shapes = MatmulShape.tinyllama
            let progress = ProgressLine(total: KernelBench.pointCount(shapes: shapes.count, rows: rows.count), enabled: true)
            defer { progress.finish() }
            let r = KernelBench.report(shapes: shapes, rows: rows, repeats: options.repeats ?? (options.quick ? 1 : 3),
                                       minSeconds: options.quick ? 0.05 : 0.2, machine: machine, threads: pool, progress: progress)
            emit(r)
            return [r]
        }
    }
}

struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "model",
        abstract: "Batch-1 decode vs the bandwidth roofline and prefill GFLOP/s (default synthetic:tinyllama-1.1b).")

    @OptionGroup var options: BenchOptions
    @Option(help: "Prompt tokens for the prefill measurement.") var prefill: Int = 512
    @Option(help: "Tokens decoded for the batch-1 measurement.") var gen: Int = 32

    func run() throws {
        try options.session { pool, machine, emit in
            let repeats = options.repeats ?? (options.quick ? 1 : 3)
            let progress = ProgressLine(total: 3 * repeats, enabled: true)
            defer { progress.finish() }
            let r = try EngineBench.model(spec: options.model ?? "synthetic:tinyllama-1.1b", decodeTokens: gen, prefillTokens: prefill,
                                          repeats: repeats, machine: machine, threads: pool, progress: progress)
            emit(r)
            return [r]
        }
    }
}

struct BenchServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve",
        abstract: "Streamed token-id completions against a running OpenAI-compatible server (banyan serve, llama-server) at several client counts.",
        discussion: """
        Every request is one shared system prompt plus a user part of its own, as token ids to POST /v1/completions
        (stream, ignore_eos). Per level: throughput, time to first token and inter-token latency p50/p99, the TTFT of a
        lone request after the load; from Banyan's /metrics the peak KV blocks and the prefix-cache hit rate.
        """)

    @Option(help: "The server, http://127.0.0.1:PORT (loopback only).") var url: String
    @Option(help: "Shared system prompt tokens.") var systemTokens: Int = 1024
    @Option(help: "Per-request user tokens.") var userTokens: Int = 32
    @Option(help: "Output tokens per request (ignore_eos).") var outputTokens: Int = 64
    @Option(help: "Concurrency levels, e.g. 1,8,32,64.") var clients: String = "1,8,32,64"
    @Option(help: "Requests each client sends per level (closed loop).") var requestsPerClient: Int = 1
    @Option(help: "Requests per level instead of clients × requests-per-client.") var requests: Int?
    @Option(help: "closed (each client sends when its previous request ends) or poisson (needs --rate).") var arrival: ServeArrival = .closed
    @Option(help: "Poisson arrivals per second (the level's clients cap the requests in flight).") var rate: Double?
    @Option(help: "Prompt ids are drawn in 3..<N (32000 fits smollm2 and tinyllama).") var vocabSize: Int = 32000
    @Option(help: "Seed of the prompts, arrivals and sampling.") var seed: UInt64 = 0
    @Option(help: "Sampling temperature.") var temperature: Double = 0
    @Option(help: "Time limit of each level (no new requests after it; streams still open are abandoned).") var secondsPerLevel: Double = 900
    @Option(help: "The requests' model field (default: not sent).") var modelName: String?
    @Flag(help: "Skip the lone warm-up request whose TTFT is reported as cold.") var noWarmup = false
    @Option(help: "Write the whole report (every request's timings) as JSON to this file.") var json: String?

    func run() async throws {
        var c = ServeBenchConfig(url: url)
        c.systemTokenCount = systemTokens; c.userTokenCount = userTokens; c.outputTokenCount = outputTokens
        c.clients = try parseIntList(clients, flag: "--clients")
        c.requestsPerClient = requestsPerClient; c.totalRequests = requests
        c.arrival = arrival; c.rate = rate; c.vocabularySize = vocabSize; c.seed = seed; c.temperature = temperature
        c.secondsPerLevel = secondsPerLevel; c.warmup = !noWarmup; c.model = modelName
        let bench = try ServeBench(config: c) { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        let report = try await bench.run(command: CommandLine.arguments)
        print(report.table.rendered())
        if let json {
            do { try report.jsonData().write(to: URL(fileURLWithPath: json)) } catch {
                throw BenchError.io(path: json, message: "cannot write (\(error.localizedDescription))")
            }
            print("wrote \(json)")
        }
    }
}
