import Foundation
import BanyanKernels
import BanyanKV
import BanyanAttention
import BanyanModel
import BanyanEngine

/// `bench decode`: N samples of one prompt through `Engine.generate` (end to end: prefill, sampling,
/// waves), per attention mode and batch size.
public struct DecodeBenchConfig: Sendable {
    public var model: String
    public var prefix: Int
    public var batches: [Int]
    public var gen: Int
    public var modes: [AttentionMode]
    public var repeats: Int
    public var maxKVBytes: Int
    /// 0 is greedy; every sample still decodes `gen` tokens (EOS ignored).
    public var temperature: Float

    public init(model: String, prefix: Int, batches: [Int], gen: Int, modes: [AttentionMode] = AttentionMode.allCases,
                repeats: Int = 1, maxKVBytes: Int, temperature: Float = 0) {
        self.model = model; self.prefix = prefix; self.batches = batches; self.gen = gen; self.modes = modes
        self.repeats = repeats; self.maxKVBytes = maxKVBytes; self.temperature = temperature
    }

    public func validate() throws {
        guard prefix >= 1, gen >= 1, repeats >= 1, !batches.isEmpty, batches.allSatisfy({ $0 >= 1 }), !modes.isEmpty else {
            throw BenchError.invalidArgument("decode: --prefix, --gen, --repeats and every --batch must be ≥ 1, and --attention must name a mode")
        }
    }
}

public enum EngineBench {
    /// Runs `bench decode`. Modes interleave within each repeat; a point the KV budget cannot hold is
    /// reported as skipped with the engine's reason.
    public static func decode(_ cfg: DecodeBenchConfig, threads: ThreadPool, progress: ProgressLine?) throws -> SuiteReport {
        try cfg.validate()
        let (model, note) = try loadBenchModel(cfg.model, context: cfg.prefix + cfg.gen, threads: threads)
        var options = EngineOptions()
        options.threadCount = threads.threadCount
        options.maxKVBytes = cfg.maxKVBytes
        options.maxBatch = cfg.batches.max()!
        let engine = try Engine(model: model, threads: threads, options: options)
        let prompt = DecodeRunner.tokens(cfg.prefix, vocab: model.config.vocabularySize, seed: 1)
        var points: [BenchPoint] = []
        for batch in cfg.batches {
            var samples: [AttentionMode: [String: [Double]]] = [:]
            var skipped: String?
            for _ in 0..<cfg.repeats where skipped == nil {
                for mode in cfg.modes where skipped == nil {
                    engine.options.attention = mode
                    var request = Request(prompt: prompt)
                    request.n = batch
                    request.maxTokens = cfg.gen
                    request.ignoreEOS = true
                    request.sampling = SamplingParameters(temperature: cfg.temperature, seed: 0)
                    do {
                        let r = try engine.generate(request)
                        var m = samples[mode] ?? [:]
                        m["decode_tokens_per_s", default: []].append(Double(r.completionTokens) / r.decodeSeconds)
                        m["decode_s", default: []].append(r.decodeSeconds)
                        m["prefill_s", default: []].append(r.prefillSeconds)
                        m["kv_bytes", default: []].append(Double(r.kvPeakBytes))
                        samples[mode] = m
                    } catch let e as KVError {
                        skipped = e.description
                    }
                    progress?.advance("decode \(mode.rawValue) batch \(batch)")
                }
            }
            for mode in cfg.modes {
                if let skipped {
                    points.append(BenchPoint(series: mode.rawValue, parameters: ["batch": batch, "prefix": cfg.prefix, "gen": cfg.gen],
                                             skipped: skipped))
                } else {
                    points.append(BenchPoint(series: mode.rawValue, parameters: ["batch": batch, "prefix": cfg.prefix, "gen": cfg.gen],
                                             metrics: (samples[mode] ?? [:]).mapValues(Statistic.init)))
                }
            }
        }
        var settings = ["prefix": "\(cfg.prefix)", "gen": "\(cfg.gen)", "repeats": "\(cfg.repeats)",
                        "sampling": cfg.temperature == 0 ? "greedy" : "temperature \(cfg.temperature)",
                        "path": "Engine.generate (n = batch, EOS ignored)"]
        if let note { settings["note"] = note }
        let table = ModeTable.make(title: "decode: \(cfg.model), prompt \(cfg.prefix) tokens, \(cfg.gen) generated per sample",
                                   legend: "decode tokens/s per mode (median ±half-spread over repeats); hydragen/baseline and hydragen/none speedups; prefill s and peak KV MiB (hydragen)",
                                   points: points, x: "batch", metric: "decode_tokens_per_s", modes: cfg.modes.map(\.rawValue),
                                   extra: [("prefill s", "prefill_s", 1), ("KV MiB", "kv_bytes", 1.0 / 1_048_576)])
        return SuiteReport(suite: "decode", title: "Decode throughput, N samples of one prompt (Engine.generate)", model: cfg.model,
                           settings: settings, points: points, table: table,
                           summary: ModeTable.speedupSummary(points: points, x: "batch", metric: "decode_tokens_per_s", unit: "batch"),
                           plot: ModeTable.plot(title: "Decode throughput, prefix \(cfg.prefix) (\(cfg.model))", xLabel: "batch (samples of one prompt)",
                                                yLabel: "decode tokens/s", points: points, x: "batch", metric: "decode_tokens_per_s"))
    }

    /// `bench model`: batch-1 decode tokens/s against the bandwidth roofline; prefill and a batch-64
    /// decode step against the measured peak product rate of the model's precision.
    public static func model(spec: String, decodeTokens: Int, prefillTokens: Int, repeats: Int, machine: MachineDescription,
                             threads: ThreadPool, progress: ProgressLine?) throws -> SuiteReport {
        guard decodeTokens >= 1, prefillTokens >= 1, repeats >= 1 else {
            throw BenchError.invalidArgument("model: --gen, --prefill and --repeats must be ≥ 1")
        }
        let (model, note) = try loadBenchModel(spec, context: max(prefillTokens + 1, 16 + decodeTokens), threads: threads)
        let engine = try Engine(model: model, threads: threads, options: { var o = EngineOptions(); o.threadCount = threads.threadCount; return o }())
        let c = model.config, w = model.weights
        // Bytes one decode token streams: every layer matrix, the LM head, one embedding row.
        let layerBytes = w.layers.reduce(0) { acc, l in acc + [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown].reduce(0) { $0 + $1.byteCount } }
        let tokenBytes = Double(layerBytes + w.lmHead.byteCount + w.embedding.byteCount / max(1, w.embedding.rows))
        let layerParams = Double(w.layers.reduce(0) { acc, l in acc + [l.wq, l.wk, l.wv, l.wo, l.wGate, l.wUp, l.wDown].reduce(0) { $0 + $1.rows * $1.cols } })
        let lmParams = Double(w.lmHead.rows * w.lmHead.cols)
        var decodeRates: [Double] = [], prefillSeconds: [Double] = [], batchedRates: [Double] = []
        let batchRows = 64
        let shortPrompt = DecodeRunner.tokens(16, vocab: c.vocabularySize, seed: 2)
        let longPrompt = DecodeRunner.tokens(prefillTokens, vocab: c.vocabularySize, seed: 3)
        for _ in 0..<repeats {
            var r = Request(prompt: shortPrompt)
            r.maxTokens = decodeTokens; r.ignoreEOS = true; r.sampling = SamplingParameters(temperature: 0)
            let g = try engine.generate(r)
            decodeRates.append(Double(g.completionTokens) / g.decodeSeconds)
            progress?.advance("batch-1 decode")
            var p = Request(prompt: longPrompt)
            p.maxTokens = 1; p.ignoreEOS = true; p.sampling = SamplingParameters(temperature: 0)
            prefillSeconds.append(try engine.generate(p).prefillSeconds)
            progress?.advance("prefill \(prefillTokens)")
            // 64 samples of the short prompt: every step is a 64-row product through every matrix.
            var b = Request(prompt: shortPrompt)
            b.n = batchRows; b.maxTokens = decodeTokens; b.ignoreEOS = true; b.sampling = SamplingParameters(temperature: 0)
            let gb = try engine.generate(b)
            batchedRates.append(Double(gb.completionTokens) / gb.decodeSeconds)
            progress?.advance("batch-\(batchRows) decode")
        }
        // Fast precision runs its products with vdpbf16ps: compare with that peak.
        let peak = model.usesBF16Products ? (machine.peakFastGFLOPs ?? machine.peakGFLOPs) : machine.peakGFLOPs
        let peakName = model.usesBF16Products ? "bf16 (fast) matmul peak" : "matmul peak"
        let decode = Statistic(decodeRates)
        let roofline = machine.bandwidthGBps * 1e9 / tokenBytes
        let prefill = Statistic(prefillSeconds)
        // Prefill computes logits for the last row only.
        let prefillFlops = 2 * (layerParams * Double(prefillTokens) + lmParams)
        let prefillRate = prefill.map { Double(prefillTokens) / $0 }
        let prefillGFLOPs = prefill.map { prefillFlops / $0 / 1e9 }
        // Each decode row runs every matrix and the LM head (attention over ≤ 16 + gen tokens is negligible).
        let batched = Statistic(batchedRates)
        let batchedGFLOPs = batched.map { 2 * (layerParams + lmParams) * $0 / 1e9 }
        let points = [
            BenchPoint(series: "decode", parameters: ["batch": 1, "gen": decodeTokens],
                       metrics: ["decode_tokens_per_s": decode, "roofline_fraction": decode.map { $0 / roofline },
                                 "bytes_per_token": Statistic([tokenBytes])]),
            BenchPoint(series: "prefill", parameters: ["tokens": prefillTokens],
                       metrics: ["prefill_s": prefill, "prefill_tokens_per_s": prefillRate, "gflops": prefillGFLOPs,
                                 "peak_fraction": prefillGFLOPs.map { $0 / peak }]),
            BenchPoint(series: "batched_decode", parameters: ["batch": batchRows, "gen": decodeTokens],
                       metrics: ["decode_tokens_per_s": batched, "gflops": batchedGFLOPs,
                                 "peak_fraction": batchedGFLOPs.map { $0 / peak }]),
        ]
        let weightType = w.quantizedType?.name ?? w.dtype.rawValue
        var table = TextTable(title: "model: \(spec) (\(weightType) weights, \(threads.threadCount) threads)",
                              legend: "batch-1 decode against the bandwidth roofline (weight bytes per token ÷ measured bandwidth); prefill and batch-\(batchRows) decode against the measured \(peakName) (precision \(model.precision.rawValue))",
                              headers: ["measure", "value", "roofline / peak", "fraction"])
        table.rows.append(["batch-1 decode tokens/s", Format.stat(decode), Format.number(roofline), Format.percent(decode.median / roofline)])
        table.rows.append(["prefill \(prefillTokens) tokens/s", Format.stat(prefillRate), "", ""])
        table.rows.append(["prefill GFLOP/s", Format.stat(prefillGFLOPs), Format.number(peak),
                           Format.percent(prefillGFLOPs.median / peak)])
        table.rows.append(["batch-\(batchRows) decode tokens/s", Format.stat(batched), "", ""])
        table.rows.append(["batch-\(batchRows) decode GFLOP/s", Format.stat(batchedGFLOPs), Format.number(peak),
                           Format.percent(batchedGFLOPs.median / peak)])
        var settings = ["weight_bytes_per_token": Format.number(tokenBytes / 1e6) + " MB", "bandwidth_GBps": Format.number(machine.bandwidthGBps),
                        "prefill_flops": "2·(layer params·tokens + lm_head params) = \(Format.number(prefillFlops / 1e9)) GFLOP",
                        "repeats": "\(repeats)", "precision": model.precision.rawValue, "peak": peakName]
        if let note { settings["note"] = note }
        if model.usesIntegerProducts {
            settings["products"] = "8-bit activations × \(weightType) weights, integer dot products (the peak is float32 FMA's, for scale)"
        }
        return SuiteReport(suite: "model", title: "Model throughput vs. roofline", model: spec, settings: settings, points: points,
                           table: table,
                           summary: [String(format: "Batch-1 decode reaches %.0f%% of the bandwidth roofline; prefill %.0f%% and a batch-%d decode step %.0f%% of the measured %@.",
                                            100 * decode.median / roofline, 100 * prefillGFLOPs.median / peak, batchRows,
                                            100 * batchedGFLOPs.median / peak, peakName)],
                           plot: nil)
    }
}

/// Tables and plots of "mode × x" measurements (one row per x, one column per mode, then ratios).
enum ModeTable {
    static func make(title: String, legend: String, points: [BenchPoint], x: String, metric: String, modes: [String],
                     extra: [(header: String, metric: String, scale: Double)] = [], ratioOf: String = "hydragen",
                     lowerIsBetter: Bool = false) -> TextTable {
        let xs = Array(Set(points.compactMap { $0.parameters[x] })).sorted()
        var headers = [x] + modes
        let others = modes.filter { $0 != ratioOf }
        let hasRatio = modes.contains(ratioOf)
        if hasRatio { headers += others.map { lowerIsBetter ? "speedup vs \($0)" : "\(ratioOf)/\($0)" } }
        headers += extra.map(\.header)
        var table = TextTable(title: title, legend: legend, headers: headers)
        for v in xs {
            let at = points.filter { $0.parameters[x] == v }
            if let skip = at.first(where: { $0.skipped != nil })?.skipped {
                table.rows.append(["\(v)", "not measured: \(skip)"])
                continue
            }
            func point(_ s: String) -> BenchPoint? { at.first { $0.series == s } }
            var row = ["\(v)"] + modes.map { Format.stat(point($0)?.metrics[metric]) }
            if hasRatio {
                let h = point(ratioOf)?.median(metric)
                row += others.map { o in Format.ratio(h.flatMap { h in point(o)?.median(metric).map { lowerIsBetter ? $0 / h : h / $0 } }) }
            }
            row += extra.map { e in point(ratioOf).flatMap { $0.median(e.metric) }.map { Format.number($0 * e.scale) } ?? "-" }
            table.rows.append(row)
        }
        return table
    }

    /// "hydragen is A× baseline and B% of none at batch N" for the largest measured x.
    static func speedupSummary(points: [BenchPoint], x: String, metric: String, unit: String, higherIsBetter: Bool = true) -> [String] {
        let measured = points.filter { $0.skipped == nil }
        guard let top = measured.compactMap({ $0.parameters[x] }).max() else { return ["No point fitted the KV budget."] }
        func value(_ s: String) -> Double? { measured.first { $0.parameters[x] == top && $0.series == s }?.median(metric) }
        guard let h = value("hydragen") else { return [] }
        var parts: [String] = []
        if let b = value("baseline") {
            parts.append(String(format: "%.2f× baseline", higherIsBetter ? h / b : b / h))
        }
        if let n = value("none") {
            parts.append(String(format: "%.0f%% of the no-attention ceiling", 100 * (higherIsBetter ? h / n : n / h)))
        }
        guard !parts.isEmpty else { return [] }
        return ["At \(unit) \(top), hydragen runs at " + parts.joined(separator: " and ") + "."]
    }

    static func plot(title: String, xLabel: String, yLabel: String, points: [BenchPoint], x: String, metric: String,
                     logX: Bool = true) -> PlotSpec {
        var order: [String] = []
        for p in points where !order.contains(p.series) { order.append(p.series) }
        let series = order.map { s in
            PlotSpec.Series(name: s, points: points.filter { $0.series == s && $0.skipped == nil }.compactMap { p in
                guard let xv = p.parameters[x], let y = p.median(metric) else { return nil }
                return (Double(xv), y)
            })
        }
        return PlotSpec(title: title, xLabel: xLabel, yLabel: yLabel, logX: logX, series: series)
    }
}
