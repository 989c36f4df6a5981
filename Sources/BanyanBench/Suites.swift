import Foundation
import BanyanKernels
import BanyanKV
import BanyanAttention
import BanyanModel
import BanyanEngine

/// The paper's experiments (`banyan bench SUITE`).
public enum Suite: String, Sendable, CaseIterable, Codable {
    case throughput
    case prefixLength = "prefix-length"
    case attention
    case hierarchy
    case longDocument = "long-document"
    /// A short tour of the five above.
    case tour = "default"
    /// All five at full size in one process: the documented full run.
    case all

    public static let experiments: [Suite] = [.throughput, .prefixLength, .attention, .hierarchy, .longDocument]
}

/// Sizes of every suite. `full` is the documented run, `quick` the README's three-minute run,
/// `tour` the default suite; tests build tiny ones.
public struct SuiteSizes: Sendable {
    public var model: String
    public var repeats: Int
    // throughput (paper Fig. 3 left)
    public var throughputPrefix: Int
    public var throughputGen: Int
    public var throughputBatches: [Int]
    // prefix-length (Fig. 3 right); prefixes are multiples of 32
    public var prefixBatch: Int
    public var prefixLengths: [Int]
    public var prefixGen: Int
    // attention grid (Fig. 4); head shape of `model` unless given
    public var attentionBatches: [Int]
    public var attentionPrefixes: [Int]
    public var attentionSuffixes: [Int]
    public var attentionMinSeconds: Double
    // hierarchy (§4.4)
    public var fewShotTokens: Int
    public var problemCount: Int
    public var problemTokens: Int
    public var samplesPerProblem: [Int]
    public var hierarchyGen: Int
    // long document (Fig. 5)
    public var documentTokens: Int
    public var questionCounts: [Int]
    public var questionTokens: Int
    public var answerTokens: Int

    /// The documented full run (on 2 cores: see docs/BENCHMARKS.md for its duration).
    public static let full = SuiteSizes(
        model: "synthetic:sheared-llama-1.3b", repeats: 2,
        throughputPrefix: 2048, throughputGen: 16, throughputBatches: [1, 2, 4, 8, 16, 32, 64, 128, 256],
        prefixBatch: 32, prefixLengths: [1024, 2048, 4096, 8192, 16384], prefixGen: 16,
        attentionBatches: [1, 4, 16, 64], attentionPrefixes: [1024, 4096, 16384], attentionSuffixes: [32, 256],
        attentionMinSeconds: 0.1,
        fewShotTokens: 2048, problemCount: 10, problemTokens: 300, samplesPerProblem: [4, 8, 16], hierarchyGen: 16,
        documentTokens: 16384, questionCounts: [4, 16, 64], questionTokens: 32, answerTokens: 16)

    /// Under three minutes on 2 cores: a 135M-parameter model, short prompts, small batches.
    public static let quick = SuiteSizes(
        model: "synthetic:smollm2-135m", repeats: 2,
        throughputPrefix: 2048, throughputGen: 8, throughputBatches: [1, 8, 32],
        prefixBatch: 16, prefixLengths: [512, 2048], prefixGen: 8,
        attentionBatches: [4, 32], attentionPrefixes: [4096], attentionSuffixes: [32],
        attentionMinSeconds: 0.05,
        fewShotTokens: 1024, problemCount: 4, problemTokens: 128, samplesPerProblem: [8], hierarchyGen: 4,
        documentTokens: 2048, questionCounts: [16], questionTokens: 16, answerTokens: 4)

    /// The default suite: the full sizes thinned to a few points each.
    public static var tour: SuiteSizes {
        var s = full
        s.repeats = 2
        s.throughputBatches = [1, 16, 64]
        s.prefixLengths = [1024, 4096]
        s.attentionBatches = [16, 64]; s.attentionPrefixes = [4096]; s.attentionSuffixes = [32]
        s.samplesPerProblem = [8]
        s.questionCounts = [16]
        return s
    }

    public func validate() throws {
        let lists: [(String, [Int])] = [("throughput batches", throughputBatches), ("prefix lengths", prefixLengths),
                                        ("attention batches", attentionBatches), ("attention prefixes", attentionPrefixes),
                                        ("samples per problem", samplesPerProblem), ("question counts", questionCounts)]
        for (name, l) in lists where l.isEmpty || l.contains(where: { $0 < 1 }) {
            throw BenchError.invalidArgument("bench: \(name) must be non-empty and ≥ 1, got \(l)")
        }
        if let bad = prefixLengths.first(where: { $0 % 32 != 0 }) {
            throw BenchError.invalidArgument("bench prefix-length: prefix \(bad) is not a multiple of 32 (the KV block size)")
        }
        let singles: [(String, Int)] = [("repeats", repeats), ("throughput prefix", throughputPrefix), ("gen", throughputGen),
                                        ("prefix gen", prefixGen), ("few-shot tokens", fewShotTokens), ("problems", problemCount),
                                        ("problem tokens", problemTokens), ("hierarchy gen", hierarchyGen),
                                        ("document tokens", documentTokens), ("question tokens", questionTokens),
                                        ("answer tokens", answerTokens), ("prefix batch", prefixBatch)]
        for (name, v) in singles where v < 1 { throw BenchError.invalidArgument("bench: \(name) must be ≥ 1, got \(v)") }
    }
}

/// Runs the suites on one model (loaded once) and one thread pool.
public final class SuiteRunner {
    public let sizes: SuiteSizes
    public let threads: ThreadPool
    public let maxKVBytes: Int
    public let progress: ProgressLine
    /// The attention modes the decode suites compare (the attention suite always times hydragen and baseline).
    let modes: [AttentionMode]
    /// The matmul peak measured in the same run, for the attention suite's share-of-peak column.
    public var matmulPeakGFLOPs: Double?
    private var loaded: (Model, String?)?

    public init(sizes: SuiteSizes, threads: ThreadPool, maxKVBytes: Int, showProgress: Bool, suites: [Suite],
                modes: [AttentionMode] = AttentionMode.allCases) throws {
        try sizes.validate()
        guard !modes.isEmpty else { throw BenchError.invalidArgument("bench: at least one attention mode is needed") }
        self.sizes = sizes
        self.threads = threads
        self.maxKVBytes = maxKVBytes
        self.modes = modes
        progress = ProgressLine(total: SuiteRunner.pointCount(sizes, suites, modes: modes.count), enabled: showProgress)
    }

    /// Measurements each suite takes (for the progress bar).
    static func pointCount(_ s: SuiteSizes, _ suites: [Suite], modes m: Int) -> Int {
        return suites.reduce(0) { n, suite in
            switch suite {
            case .throughput: return n + s.throughputBatches.count * m * s.repeats
            case .prefixLength: return n + s.prefixLengths.count * m * s.repeats
            case .attention: return n + s.attentionBatches.count * s.attentionPrefixes.count * s.attentionSuffixes.count
            case .hierarchy: return n + s.samplesPerProblem.count * (m + 1) * s.repeats
            case .longDocument: return n + s.questionCounts.count * m * s.repeats
            case .tour, .all: return n
            }
        }
    }

    /// The model of every decode suite, loaded once, with its context widened (synthetic) to the longest need.
    func model() throws -> (Model, String?) {
        if let loaded { return loaded }
        let s = sizes
        let context = max(s.throughputPrefix + s.throughputGen, (s.prefixLengths.max() ?? 0) + s.prefixGen,
                          s.fewShotTokens + s.problemTokens + s.hierarchyGen, s.documentTokens + s.questionTokens + s.answerTokens)
        let m = try loadBenchModel(s.model, context: context, threads: threads)
        loaded = m
        return m
    }

    public func run(_ suite: Suite) throws -> SuiteReport {
        switch suite {
        case .throughput: return try throughput()
        case .prefixLength: return try prefixLength()
        case .attention: return try attention()
        case .hierarchy: return try hierarchy()
        case .longDocument: return try longDocument()
        case .tour, .all: preconditionFailure("the tour and the full run run each experiment in turn")
        }
    }

    // MARK: - Shared decode measurement

    /// Decode `gen` tokens on `batch` forks of `root` per mode and repeat (modes interleaved); each
    /// sample is tokens/s. Nil metrics with the reason when the forks do not fit the KV budget.
    func measureDecode(_ r: DecodeRunner, root: SequenceID, batch: Int, gen: Int, label: String,
                       parameters: [String: Int]) throws -> [BenchPoint] {
        let length = r.kv.length(root)
        if let problem = r.fitProblem(blocks: r.blocksNeeded(forks: batch, length: length, extra: gen)) {
            for _ in 0..<(modes.count * sizes.repeats) { progress.advance("\(label): skipped") }
            return modes.map { BenchPoint(series: $0.rawValue, parameters: parameters, skipped: problem) }
        }
        var rates = [AttentionMode: [Double]](), kvBytes = 0
        let first = DecodeRunner.tokens(batch, vocab: r.config.vocabularySize, seed: UInt64(batch)).map(Int32.init)
        for _ in 0..<sizes.repeats {
            for mode in modes {
                var forks: [SequenceID] = []
                defer { for s in forks { r.kv.free(s) } }
                for _ in 0..<batch { forks.append(try r.kv.fork(root)) }
                let seconds = try r.decode(forks, first: first, steps: gen, mode: mode)
                rates[mode, default: []].append(Double(batch * gen) / seconds)
                kvBytes = max(kvBytes, r.usedBytes)
                progress.advance("\(label) \(mode.rawValue)")
            }
        }
        return modes.map { mode in
            BenchPoint(series: mode.rawValue, parameters: parameters,
                       metrics: ["decode_tokens_per_s": Statistic(rates[mode]!), "kv_bytes": Statistic([Double(kvBytes)])])
        }
    }

    func settings(_ extra: [String: String], note: String?) -> [String: String] {
        var s = extra
        s["repeats"] = "\(sizes.repeats)"
        if let note { s["note"] = note }
        return s
    }

    // MARK: - Suites

    /// Decode tokens/s vs batch size, one prompt (paper Fig. 3 left).
    func throughput() throws -> SuiteReport {
        let s = sizes
        let (model, note) = try model()
        let r = try DecodeRunner(model: model, threads: threads, maxKVBytes: maxKVBytes)
        let root = r.kv.createSequence()
        try r.prefill([(root, DecodeRunner.tokens(s.throughputPrefix, vocab: r.config.vocabularySize, seed: 10))], mode: .hydragen)
        var points: [BenchPoint] = []
        for b in s.throughputBatches.sorted() {
            points += try measureDecode(r, root: root, batch: b, gen: s.throughputGen, label: "throughput batch \(b)",
                                        parameters: ["batch": b, "prefix": s.throughputPrefix, "gen": s.throughputGen])
        }
        let table = ModeTable.make(title: "throughput: \(s.model), one \(s.throughputPrefix)-token prompt, \(s.throughputGen) tokens per sample",
                                   legend: "columns: batch = samples decoded together; decode tokens/s per attention mode (median ±half-spread); speedups of hydragen; KV MiB held (shared prompt stored once)",
                                   points: points, x: "batch", metric: "decode_tokens_per_s", modes: modes.map(\.rawValue),
                                   extra: [("KV MiB", "kv_bytes", 1.0 / 1_048_576)])
        return SuiteReport(suite: Suite.throughput.rawValue, title: "End-to-end decode throughput vs batch size", model: s.model,
                           settings: settings(["prefix": "\(s.throughputPrefix)", "gen": "\(s.throughputGen)"], note: note),
                           points: points, table: table,
                           summary: ModeTable.speedupSummary(points: points, x: "batch", metric: "decode_tokens_per_s", unit: "batch"),
                           plot: ModeTable.plot(title: "Decode throughput, \(s.throughputPrefix)-token shared prompt", xLabel: "batch size",
                                                yLabel: "decode tokens/s", points: points, x: "batch", metric: "decode_tokens_per_s"))
    }

    /// Throughput vs shared-prefix length at a fixed batch (Fig. 3 right). The longest prefix is
    /// prefilled once; shorter ones share its first blocks.
    func prefixLength() throws -> SuiteReport {
        let s = sizes
        let (model, note) = try model()
        let r = try DecodeRunner(model: model, threads: threads, maxKVBytes: maxKVBytes)
        let lengths = s.prefixLengths.sorted()
        var points: [BenchPoint] = []
        var usable = lengths
        if model.config.maxPositionCount < lengths.last! + s.prefixGen {
            usable = lengths.filter { $0 + s.prefixGen <= model.config.maxPositionCount }
            for p in lengths where !usable.contains(p) {
                for m in modes { points.append(BenchPoint(series: m.rawValue, parameters: ["prefix": p, "batch": s.prefixBatch],
                                                          skipped: "prefix \(p) + \(s.prefixGen) exceeds the model's context of \(model.config.maxPositionCount)")) }
                for _ in 0..<(modes.count * s.repeats) { progress.advance("prefix \(p): skipped") }
            }
        }
        if let longest = usable.last {
            let root = r.kv.createSequence()
            var fits = true
            do {
                try r.prefill([(root, DecodeRunner.tokens(longest, vocab: r.config.vocabularySize, seed: 11))], mode: .hydragen)
            } catch let e as KVError {
                fits = false
                for p in usable {
                    for m in modes { points.append(BenchPoint(series: m.rawValue, parameters: ["prefix": p, "batch": s.prefixBatch], skipped: e.description)) }
                    for _ in 0..<(modes.count * s.repeats) { progress.advance("prefix \(p): skipped") }
                }
            }
            if fits {
                for p in usable {
                    let sub = p == longest ? root : try r.prefixOf(root, length: p)
                    points += try measureDecode(r, root: sub, batch: s.prefixBatch, gen: s.prefixGen, label: "prefix \(p)",
                                                parameters: ["prefix": p, "batch": s.prefixBatch])
                    if sub != root { r.kv.free(sub) }
                }
            }
        }
        let table = ModeTable.make(title: "prefix-length: \(s.model), batch \(s.prefixBatch), \(s.prefixGen) tokens per sample",
                                   legend: "columns: prefix = shared prompt tokens; decode tokens/s per mode (median ±half-spread); speedups of hydragen; KV MiB held",
                                   points: points, x: "prefix", metric: "decode_tokens_per_s", modes: modes.map(\.rawValue),
                                   extra: [("KV MiB", "kv_bytes", 1.0 / 1_048_576)])
        var summary = ModeTable.speedupSummary(points: points, x: "prefix", metric: "decode_tokens_per_s", unit: "prefix")
        let measured = points.filter { $0.skipped == nil }
        if let lo = measured.compactMap({ $0.parameters["prefix"] }).min(), let hi = measured.compactMap({ $0.parameters["prefix"] }).max(), lo < hi {
            let drops = modes.compactMap { m -> String? in
                guard let a = measured.first(where: { $0.series == m.rawValue && $0.parameters["prefix"] == lo })?.median("decode_tokens_per_s"),
                      let b = measured.first(where: { $0.series == m.rawValue && $0.parameters["prefix"] == hi })?.median("decode_tokens_per_s") else { return nil }
                return String(format: "%@ %.0f%%", m.rawValue, 100 * (1 - b / a))
            }
            summary.append("Throughput drop from prefix \(lo) to \(hi): " + drops.joined(separator: ", ") + ".")
        }
        return SuiteReport(suite: Suite.prefixLength.rawValue, title: "Decode throughput vs shared-prefix length", model: s.model,
                           settings: settings(["batch": "\(s.prefixBatch)", "gen": "\(s.prefixGen)"], note: note),
                           points: points, table: table, summary: summary,
                           plot: ModeTable.plot(title: "Decode throughput vs prefix length, batch \(s.prefixBatch)", xLabel: "shared prefix (tokens)",
                                                yLabel: "decode tokens/s", points: points, x: "prefix", metric: "decode_tokens_per_s"))
    }

    /// Attention-only grid (Fig. 4): hydragen vs baseline on `Attention.run`, one layer with the model's
    /// head shape. `none` does no work here, so it is not a series.
    public func attention(heads: Int? = nil, kvHeads: Int? = nil, headDim: Int? = nil, kvDType forced: DType? = nil) throws -> SuiteReport {
        let s = sizes
        // A synthetic shape needs no weights; a checkpoint's shape comes from loading it.
        // KV blocks hold what the engine would store for this model (bf16 under fast precision).
        var config: ModelConfig, kvDType: DType
        let parts = s.model.dropFirst("synthetic:".count).split(separator: ":").map(String.init)
        if s.model.hasPrefix("synthetic:"), let name = parts.first, let c = SyntheticModels.shapes[name] {
            config = c
            let weights = parts.count > 1 ? DType(rawValue: parts[1]) ?? .bf16 : .bf16
            kvDType = EngineOptions.defaultKVDType(precision: Model.defaultPrecision(weights: weights))
        } else {
            let m = try model().0
            config = m.config
            kvDType = EngineOptions.defaultKVDType(precision: m.precision)
        }
        if let heads { config.headCount = heads }
        if let kvHeads { config.kvHeadCount = kvHeads }
        if let headDim { config.headDim = headDim }
        if let forced { kvDType = forced }
        var points: [BenchPoint] = []
        let peak = matmulPeakGFLOPs
        var legend = "columns: batch, prefix (shared), suffix (private) tokens; µs per Attention.run call per mode; speedup; GFLOP/s (4·B·H·(P+S)·D per call) and GB/s of KV read (hydragen reads the prefix once, baseline once per sequence)"
        if let peak {
            legend += "; hydragen's GFLOP/s as a share of the matmul peak measured at the start of this run (\(Format.number(peak)) GFLOP/s), from its median and its best repeat (the peak is a best-of)"
        }
        var table = TextTable(title: "attention: one layer, \(config.headCount) heads / \(config.kvHeadCount) KV heads × \(config.headDim) (\(s.model) shape)",
                              legend: legend,
                              headers: ["batch", "prefix", "suffix", "hydragen µs", "baseline µs", "speedup", "hyd GFLOP/s", "base GFLOP/s", "hyd GB/s", "base GB/s"]
                                  + (peak == nil ? [] : ["hyd % peak", "best % peak"]))
        for p in s.attentionPrefixes.sorted() {
            for sfx in s.attentionSuffixes.sorted() {
                for b in s.attentionBatches.sorted() {
                    let c = AttentionCase(batch: b, prefix: p, suffix: sfx, heads: config.headCount, kvHeads: config.kvHeadCount, headDim: config.headDim,
                                          kvDType: kvDType)
                    let ms = try AttentionBench.run(c, modes: [.hydragen, .baseline], repeats: s.repeats,
                                                    minSeconds: s.attentionMinSeconds, threads: threads)
                    for m in ms {
                        points.append(BenchPoint(series: m.mode, parameters: ["batch": b, "prefix": p, "suffix": sfx],
                                                 metrics: ["seconds": m.seconds, "gflops": m.gflops, "gbps": m.gbps]))
                    }
                    let h = ms[0], base = ms[1]
                    table.rows.append(["\(b)", "\(p)", "\(sfx)", Format.stat(h.seconds.map { $0 * 1e6 }), Format.stat(base.seconds.map { $0 * 1e6 }),
                                       Format.ratio(base.seconds.median / h.seconds.median), Format.number(h.gflops.median),
                                       Format.number(base.gflops.median), Format.number(h.gbps.median), Format.number(base.gbps.median)]
                                      + (peak.map { [Format.percent(h.gflops.median / $0), Format.percent(h.gflops.max / $0)] } ?? []))
                    progress.advance("attention B=\(b) P=\(p) S=\(sfx)")
                }
            }
        }
        let sfx = s.attentionSuffixes.min()!
        var series: [PlotSpec.Series] = []
        for p in s.attentionPrefixes.sorted() {
            for mode in ["hydragen", "baseline"] {
                series.append(PlotSpec.Series(name: "\(mode) P=\(p)", points: points.filter {
                    $0.series == mode && $0.parameters["prefix"] == p && $0.parameters["suffix"] == sfx
                }.map { (Double($0.parameters["batch"]!), $0.median("seconds")! * 1e3) }))
            }
        }
        let best = points.filter { $0.series == "hydragen" }.compactMap { h -> (Double, BenchPoint)? in
            guard let b = points.first(where: { $0.series == "baseline" && $0.parameters == h.parameters }),
                  let hs = h.median("seconds"), let bs = b.median("seconds") else { return nil }
            return (bs / hs, h)
        }.max { $0.0 < $1.0 }
        var summary: [String] = []
        if let (speedup, at) = best {
            summary.append(String(format: "Largest hydragen speedup over baseline: %.1f× at batch %d, prefix %d, suffix %d (%.0f GFLOP/s, %.0f GB/s of KV).",
                                  speedup, at.parameters["batch"]!, at.parameters["prefix"]!, at.parameters["suffix"]!,
                                  at.median("gflops")!, at.median("gbps")!))
        }
        return SuiteReport(suite: Suite.attention.rawValue, title: "Attention microbenchmark: hydragen vs baseline", model: s.model,
                           settings: settings(["heads": "\(config.headCount)", "kv_heads": "\(config.kvHeadCount)", "head_dim": "\(config.headDim)",
                                              "kv_dtype": kvDType.rawValue], note: nil),
                           points: points, table: table, summary: summary,
                           plot: PlotSpec(title: "Attention time per layer call, suffix \(sfx)", xLabel: "batch size",
                                          yLabel: "ms per call", logX: true, series: series))
    }

    /// Two-level sharing (§4.4): a few-shot prompt shared by all, a statement per problem shared by its
    /// samples. Series: hydragen over the full tree; hydragen sharing only the few-shot prompt (each
    /// sample holds its own copy of its statement's KV, as if prompted with few-shot + statement
    /// without a tree); baseline and none over the full tree.
    func hierarchy() throws -> SuiteReport {
        let s = sizes
        let (model, note) = try model()
        let r = try DecodeRunner(model: model, threads: threads, maxKVBytes: maxKVBytes)
        let vocab = r.config.vocabularySize, T = r.blockTokens
        let root = r.kv.createSequence()
        try r.prefill([(root, DecodeRunner.tokens(s.fewShotTokens, vocab: vocab, seed: 12))], mode: .hydragen)
        var problems: [SequenceID] = []
        for _ in 0..<s.problemCount { problems.append(try r.kv.fork(root)) }
        let next = try r.prefill(problems.enumerated().map { ($0.element, DecodeRunner.tokens(s.problemTokens, vocab: vocab, seed: 100 + UInt64($0.offset))) },
                                 mode: .hydragen)
        let series = ["hydragen (full tree)", "hydragen (single-level)", "baseline", "none"]
        var points: [BenchPoint] = []
        let gen = s.hierarchyGen
        for n in s.samplesPerProblem.sorted() {
            let params = ["samples": n, "problems": s.problemCount, "few_shot": s.fewShotTokens, "problem": s.problemTokens]
            let treeBlocks = r.blocksNeeded(forks: s.problemCount * n, length: s.fewShotTokens + s.problemTokens, extra: gen)
            let flatBlocks = r.blocksNeeded(forks: s.problemCount * n, length: s.fewShotTokens, extra: s.problemTokens + gen)
            if let problem = r.fitProblem(blocks: max(treeBlocks, flatBlocks)) {
                points += series.map { BenchPoint(series: $0, parameters: params, skipped: problem) }
                for _ in 0..<(series.count * s.repeats) { progress.advance("hierarchy \(n): skipped") }
                continue
            }
            var rates = [String: [Double]](), kv = [String: Double]()
            let first = (0..<(s.problemCount * n)).map { next[$0 / n] }
            for _ in 0..<s.repeats {
                for name in series {
                    var forks: [SequenceID] = []
                    defer { for f in forks { r.kv.free(f) } }
                    for q in 0..<s.problemCount {
                        for _ in 0..<n {
                            if name == "hydragen (single-level)" {
                                // Own copy of the statement: fresh blocks past the few-shot prompt's full blocks.
                                let f = try r.kv.fork(root)
                                _ = try r.kv.append(f, count: s.problemTokens)
                                let src = r.kv.blocks(problems[q]), dst = r.kv.blocks(f)
                                for b in (s.fewShotTokens / T)..<dst.count { r.kv.pool.copy(src[b], to: dst[b]) }
                                forks.append(f)
                            } else {
                                forks.append(try r.kv.fork(problems[q]))
                            }
                        }
                    }
                    let mode: AttentionMode = name.hasPrefix("hydragen") ? .hydragen : (name == "none" ? .none : .baseline)
                    let seconds = try r.decode(forks, first: first, steps: gen, mode: mode)
                    rates[name, default: []].append(Double(forks.count * gen) / seconds)
                    kv[name] = max(kv[name] ?? 0, Double(r.usedBytes))
                    progress.advance("hierarchy \(n) samples: \(name)")
                }
            }
            points += series.map { BenchPoint(series: $0, parameters: params,
                                              metrics: ["decode_tokens_per_s": Statistic(rates[$0]!), "kv_bytes": Statistic([kv[$0]!])]) }
        }
        var table = TextTable(title: "hierarchy: \(s.model), \(s.fewShotTokens)-token few-shot prompt + \(s.problemCount) problems × \(s.problemTokens) tokens, \(gen) tokens per sample",
                              legend: "columns: samples per problem; decode tokens/s (median ±half-spread) for hydragen over the full tree, hydragen sharing only the few-shot prompt, baseline, none; full-tree speedup over each; KV MiB (full tree / single-level)",
                              headers: ["samples"] + series + ["tree/single", "tree/baseline", "KV MiB tree", "KV MiB single"])
        for n in s.samplesPerProblem.sorted() {
            let at = points.filter { $0.parameters["samples"] == n }
            if let skip = at.first?.skipped { table.rows.append(["\(n)", "not measured: \(skip)"]); continue }
            func v(_ name: String, _ m: String = "decode_tokens_per_s") -> Double? { at.first { $0.series == name }?.median(m) }
            table.rows.append(["\(n)"] + series.map { name in Format.stat(at.first { $0.series == name }?.metrics["decode_tokens_per_s"]) }
                              + [Format.ratio(v(series[0]).flatMap { a in v(series[1]).map { a / $0 } }),
                                 Format.ratio(v(series[0]).flatMap { a in v("baseline").map { a / $0 } }),
                                 Format.mib(v(series[0], "kv_bytes") ?? .nan), Format.mib(v(series[1], "kv_bytes") ?? .nan)])
        }
        var summary: [String] = []
        let measured = points.filter { $0.skipped == nil }
        if let top = measured.compactMap({ $0.parameters["samples"] }).max() {
            func v(_ name: String) -> Double? { measured.first { $0.series == name && $0.parameters["samples"] == top }?.median("decode_tokens_per_s") }
            if let t = v(series[0]), let single = v(series[1]), let b = v("baseline") {
                summary.append(String(format: "At %d samples per problem, the full tree runs %.2f× single-level sharing and %.2f× baseline.", top, t / single, t / b))
            }
        }
        return SuiteReport(suite: Suite.hierarchy.rawValue, title: "Hierarchical sharing: few-shot prompt + problems + samples", model: s.model,
                           settings: settings(["few_shot": "\(s.fewShotTokens)", "problems": "\(s.problemCount)", "problem_tokens": "\(s.problemTokens)",
                                               "gen": "\(gen)"], note: note),
                           points: points, table: table, summary: summary,
                           plot: ModeTable.plot(title: "Hierarchical sharing, \(s.problemCount) problems", xLabel: "samples per problem",
                                                yLabel: "decode tokens/s", points: points, x: "samples", metric: "decode_tokens_per_s"))
    }

    /// One long document, many short questions (Fig. 5): time to prefill the questions over the
    /// document and decode their answers, excluding the document's own prefill.
    func longDocument() throws -> SuiteReport {
        let s = sizes
        let (model, note) = try model()
        let r = try DecodeRunner(model: model, threads: threads, maxKVBytes: maxKVBytes)
        let vocab = r.config.vocabularySize
        let root = r.kv.createSequence()
        try r.prefill([(root, DecodeRunner.tokens(s.documentTokens, vocab: vocab, seed: 13))], mode: .hydragen)
        var points: [BenchPoint] = []
        for q in s.questionCounts.sorted() {
            let params = ["questions": q, "document": s.documentTokens, "question": s.questionTokens, "answer": s.answerTokens]
            if let problem = r.fitProblem(blocks: r.blocksNeeded(forks: q, length: s.documentTokens, extra: s.questionTokens + s.answerTokens)) {
                points += modes.map { BenchPoint(series: $0.rawValue, parameters: params, skipped: problem) }
                for _ in 0..<(modes.count * s.repeats) { progress.advance("long-document \(q): skipped") }
                continue
            }
            var secs = [AttentionMode: [Double]]()
            for _ in 0..<s.repeats {
                for mode in modes {
                    var forks: [SequenceID] = []
                    defer { for f in forks { r.kv.free(f) } }
                    for _ in 0..<q { forks.append(try r.kv.fork(root)) }
                    let t0 = Timing.now()
                    let first = try r.prefill(forks.enumerated().map { ($0.element, DecodeRunner.tokens(s.questionTokens, vocab: vocab, seed: 200 + UInt64($0.offset))) },
                                              mode: mode)
                    if s.answerTokens > 1 { _ = try r.decode(forks, first: first, steps: s.answerTokens - 1, mode: mode) }
                    secs[mode, default: []].append(Timing.seconds(since: t0))
                    progress.advance("long-document \(q) questions \(mode.rawValue)")
                }
            }
            points += modes.map { m in
                let st = Statistic(secs[m]!)
                return BenchPoint(series: m.rawValue, parameters: params,
                                  metrics: ["seconds": st, "answer_tokens_per_s": st.map { Double(q * s.answerTokens) / $0 }])
            }
        }
        let table = ModeTable.make(title: "long-document: \(s.model), \(s.documentTokens)-token document, questions of \(s.questionTokens) tokens, \(s.answerTokens)-token answers",
                                   legend: "columns: questions asked together; seconds to read the questions over the document and answer them, per mode (document prefill excluded; median ±half-spread); hydragen's speedup = other mode's seconds / hydragen's",
                                   points: points, x: "questions", metric: "seconds", modes: modes.map(\.rawValue), lowerIsBetter: true)
        var summary: [String] = []
        let measured = points.filter { $0.skipped == nil }
        if let top = measured.compactMap({ $0.parameters["questions"] }).max() {
            func v(_ m: String) -> Double? { measured.first { $0.series == m && $0.parameters["questions"] == top }?.median("seconds") }
            if let h = v("hydragen"), let b = v("baseline") {
                summary.append(String(format: "%d questions over the document take %.2f s with hydragen vs %.2f s baseline: %.2f× faster (none: %.2f s).",
                                      top, h, b, b / h, v("none") ?? .nan))
            }
        }
        return SuiteReport(suite: Suite.longDocument.rawValue, title: "Long document, many questions", model: s.model,
                           settings: settings(["document": "\(s.documentTokens)", "question_tokens": "\(s.questionTokens)", "answer_tokens": "\(s.answerTokens)"], note: note),
                           points: points, table: table, summary: summary,
                           plot: ModeTable.plot(title: "Answering questions over a \(s.documentTokens)-token document", xLabel: "questions",
                                                yLabel: "seconds (document prefill excluded)", points: points, x: "questions", metric: "seconds"))
    }
}
