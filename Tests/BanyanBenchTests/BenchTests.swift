import Testing
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import BanyanKernels
import BanyanAttention
import BanyanBench

/// The harness on `synthetic:tiny` with tiny sizes: report structure, every measured number positive
/// and finite, SVG well-formed, JSON round-trips. No timing asserts: timings on a shared CI machine
/// say nothing about correctness.
@Suite struct BenchHarnessTests {
    let threads = ThreadPool(threadCount: 2)

    /// Every suite at a few points each; prefixes not block-aligned where allowed, to cover partial blocks.
    static var tinySizes: SuiteSizes {
        var s = SuiteSizes.quick
        s.model = "synthetic:tiny"
        s.repeats = 2
        s.throughputPrefix = 70; s.throughputGen = 3; s.throughputBatches = [1, 4]
        s.prefixBatch = 3; s.prefixLengths = [32, 96]; s.prefixGen = 2
        s.attentionBatches = [1, 3]; s.attentionPrefixes = [40]; s.attentionSuffixes = [0, 5]; s.attentionMinSeconds = 0.001
        s.fewShotTokens = 50; s.problemCount = 2; s.problemTokens = 20; s.samplesPerProblem = [1, 3]; s.hierarchyGen = 2
        s.documentTokens = 100; s.questionCounts = [2, 3]; s.questionTokens = 6; s.answerTokens = 3
        return s
    }

    static func machine(_ threads: ThreadPool) -> MachineDescription {
        MachineDescription.measure(threads: threads, bandwidthBytes: 8 << 20)
    }

    /// Every metric sample of every measured point is positive and finite; skipped points carry a reason.
    static func checkNumbers(_ r: SuiteReport) {
        #expect(!r.points.isEmpty, "\(r.suite): no points")
        for p in r.points {
            if let skipped = p.skipped {
                #expect(!skipped.isEmpty && p.metrics.isEmpty, "\(r.suite): skipped point without a reason")
                continue
            }
            #expect(!p.metrics.isEmpty, "\(r.suite) \(p.series) \(p.parameters): no metrics")
            for (name, stat) in p.metrics {
                for x in stat.samples + [stat.median, stat.min, stat.max] {
                    #expect(x.isFinite && x > 0, "\(r.suite) \(p.series) \(p.parameters) \(name) = \(x)")
                }
            }
        }
    }

    static func checkSVG(_ plot: PlotSpec) throws {
        let svg = SVGPlot.render(plot)
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "SVG does not parse: \(String(describing: parser.parserError))\n\(svg.prefix(400))")
        func escaped(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        #expect(svg.contains(escaped(plot.xLabel)) && svg.contains(escaped(plot.yLabel)) && svg.contains(escaped(plot.title)))
        for s in plot.series { #expect(svg.contains(escaped(s.name)), "legend lacks \(s.name)") }
    }

    @Test func everySuiteOnTinyModel() throws {
        let sizes = Self.tinySizes
        let runner = try SuiteRunner(sizes: sizes, threads: threads, maxKVBytes: 256 << 20, showProgress: false, suites: Suite.experiments)
        var reports: [SuiteReport] = []
        for suite in Suite.experiments {
            let r = try runner.run(suite)
            #expect(r.suite == suite.rawValue)
            Self.checkNumbers(r)
            #expect(r.points.allSatisfy { $0.skipped == nil }, "\(r.suite): a point was skipped with a generous budget")
            #expect(!r.table.rows.isEmpty && r.table.rows.allSatisfy { $0.count == r.table.headers.count },
                    "\(r.suite): table rows must fill every column")
            #expect(!r.summary.isEmpty, "\(r.suite): no closing sentence")
            let plot = try #require(r.plot)
            #expect(plot.series.count >= 2 && plot.series.allSatisfy { !$0.points.isEmpty })
            try Self.checkSVG(plot)
            reports.append(r)
        }
        // Decode suites measure all three modes at every point.
        for r in reports where r.suite != "attention" {
            let series = Set(r.points.map(\.series))
            #expect(series.isSuperset(of: ["baseline", "none"]) && series.contains { $0.hasPrefix("hydragen") }, "\(r.suite): \(series)")
        }
        // The shared prompt is stored once: at batch 4 the KV held is far below 4 copies of the prompt.
        let throughput = reports[0]
        let bytesPerToken = Double(2 * 2 * 2 * 32 * 4)  // tiny: 2 layers × K,V × 2 KV heads × head dim 32 × float32
        let held = try #require(throughput.points.first { $0.parameters["batch"] == 4 && $0.series == "hydragen" }?.median("kv_bytes"))
        #expect(held < 4 * 70 * bytesPerToken, "KV held \(held) bytes: the prompt is not shared")
        // Single-level sharing holds more KV than the full tree (each sample copies its statement).
        let hierarchy = reports[3]
        let tree = try #require(hierarchy.points.first { $0.series == "hydragen (full tree)" && $0.parameters["samples"] == 3 }?.median("kv_bytes"))
        let single = try #require(hierarchy.points.first { $0.series == "hydragen (single-level)" && $0.parameters["samples"] == 3 }?.median("kv_bytes"))
        #expect(single > tree)

        var report = BenchReport(command: ["banyan", "bench", "--quick"], quick: true, machine: Self.machine(threads),
                                 suites: reports, wallSeconds: 1)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("banyan-bench-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = try BenchOutput.write(&report, to: dir)
        #expect(files.filter { $0.hasSuffix(".svg") }.count == Suite.experiments.count)
        for f in files where f.hasSuffix(".svg") {
            #expect(XMLParser(data: try Data(contentsOf: URL(fileURLWithPath: f))).parse(), "\(f) does not parse")
        }
        let decoded = try JSONDecoder().decode(BenchReport.self, from: try Data(contentsOf: URL(fileURLWithPath: dir + "/report.json")))
        #expect(decoded.suites.map(\.suite) == Suite.experiments.map(\.rawValue))
        #expect(decoded.suites.allSatisfy { $0.plotFile != nil })
        #expect(decoded.suites.map { $0.points.count } == reports.map { $0.points.count })
        #expect(decoded.machine.bandwidthGBps > 0 && decoded.machine.peakGFLOPs > 0 && decoded.machine.threads == 2)
    }

    /// A point the KV budget cannot hold is reported as such (with the reason), not dropped.
    @Test func pointsBeyondTheKVBudgetAreReported() throws {
        var sizes = Self.tinySizes
        sizes.throughputPrefix = 64; sizes.throughputBatches = [1, 64]; sizes.repeats = 1
        // tiny: one 32-token block of all layers is 2 × 2 × 2 × 32 × 32 × 4 = 32 KiB; room for 8 blocks.
        let runner = try SuiteRunner(sizes: sizes, threads: threads, maxKVBytes: 8 * 32 * 1024, showProgress: false, suites: [.throughput])
        let r = try runner.run(.throughput)
        Self.checkNumbers(r)
        let big = r.points.filter { $0.parameters["batch"] == 64 }
        #expect(big.count == 3 && big.allSatisfy { $0.skipped?.contains("KV budget") == true })
        #expect(r.points.filter { $0.parameters["batch"] == 1 }.allSatisfy { $0.skipped == nil })
        #expect(r.table.rows.contains { $0.joined().contains("not measured") })
    }

    /// The decode suites measure only the modes asked for (`bench decode --prefill-once --attention ...`),
    /// and the attention suite adds its share-of-peak columns when it is given the run's matmul peak.
    @Test func suitesHonourModesAndPeak() throws {
        var sizes = Self.tinySizes
        sizes.throughputBatches = [2]; sizes.repeats = 1
        let runner = try SuiteRunner(sizes: sizes, threads: threads, maxKVBytes: 64 << 20, showProgress: false,
                                     suites: [.throughput, .attention], modes: [.hydragen, .none])
        let r = try runner.run(.throughput)
        Self.checkNumbers(r)
        #expect(Set(r.points.map(\.series)) == ["hydragen", "none"])
        #expect(!r.table.headers.joined().contains("baseline"))
        #expect(r.table.rows.allSatisfy { $0.count == r.table.headers.count })

        runner.matmulPeakGFLOPs = 50
        let a = try runner.run(.attention)
        #expect(a.table.headers.suffix(2) == ["hyd % peak", "best % peak"])
        for row in a.table.rows {
            #expect(row.count == a.table.headers.count)
            let gflops = try #require(Double(row[6])), median = try #require(Double(row[10].dropLast()))
            #expect(abs(median - 100 * gflops / 50) <= 1, "share of peak \(row[10]) for \(row[6]) GFLOP/s")
            #expect(try #require(Double(row[11].dropLast())) >= median)
        }
        #expect(throws: BenchError.self) {
            try SuiteRunner(sizes: sizes, threads: threads, maxKVBytes: 64 << 20, showProgress: false, suites: [.throughput], modes: [])
        }
    }

    @Test func decodeThroughEngine() throws {
        let cfg = DecodeBenchConfig(model: "synthetic:tiny", prefix: 45, batches: [1, 3], gen: 3, repeats: 2, maxKVBytes: 64 << 20)
        let r = try EngineBench.decode(cfg, threads: threads, progress: nil)
        Self.checkNumbers(r)
        #expect(r.points.count == 2 * 3)
        #expect(r.points.allSatisfy { $0.metrics.keys.sorted() == ["decode_s", "decode_tokens_per_s", "kv_bytes", "prefill_s"] })
        #expect(r.table.rows.count == 2)
        try Self.checkSVG(try #require(r.plot))
    }

    @Test func modelRoofline() throws {
        let machine = Self.machine(threads)
        let r = try EngineBench.model(spec: "synthetic:tiny", decodeTokens: 4, prefillTokens: 40, repeats: 1, machine: machine,
                                      threads: threads, progress: nil)
        Self.checkNumbers(r)
        #expect(Set(r.points.map(\.series)) == ["decode", "prefill", "batched_decode"])
        #expect(r.points[0].metrics["roofline_fraction"] != nil && r.points[1].metrics["gflops"] != nil)
        #expect(r.points[2].parameters["batch"] == 64 && r.points[2].metrics["peak_fraction"] != nil)
    }

    @Test func kernels() throws {
        let machine = Self.machine(threads)
        let shapes = [MatmulShape(name: "a", k: 64, n: 48), MatmulShape(name: "b", k: 40, n: 30)]
        let r = KernelBench.report(shapes: shapes, rows: [1, 5], repeats: 2, minSeconds: 0.001, machine: machine, threads: threads, progress: nil)
        Self.checkNumbers(r)
        #expect(r.points.count == KernelBench.pointCount(shapes: 2, rows: 2))
        #expect(machine.peakGFLOPs > 0 && machine.bandwidthGBps > 0)
        try Self.checkSVG(try #require(r.plot))
    }

    /// The microbenchmark on odd sizes (partial blocks, GQA); GB/s follows the documented byte model.
    @Test(arguments: DType.allCases)
    func attentionMicrobenchmark(kvDType: DType) throws {
        let c = AttentionCase(batch: 3, prefix: 45, suffix: 7, heads: 4, kvHeads: 2, headDim: 16, kvDType: kvDType)
        let ms = try AttentionBench.run(c, modes: [.hydragen, .baseline], repeats: 2, minSeconds: 0.001, threads: threads)
        #expect(ms.map(\.mode) == ["hydragen", "baseline"])
        for m in ms {
            for x in m.seconds.samples + m.gflops.samples + m.gbps.samples { #expect(x.isFinite && x > 0) }
        }
        let e = kvDType.byteCount
        #expect(c.bytesRead(.baseline) == Double(3 * 52 * 2 * 2 * 16 * e))
        #expect(c.bytesRead(.hydragen) == Double((45 + 3 * 7) * 2 * 2 * 16 * e))
        #expect(throws: BenchError.self) { try AttentionCase(batch: 2, prefix: 8, suffix: 0, heads: 6, kvHeads: 4, headDim: 8).validate() }
    }

    @Test func statisticAndPlotEdgeCases() throws {
        let odd = Statistic([3, 1, 2]), even = Statistic([4, 1, 3, 2])
        #expect(odd.median == 2 && odd.min == 1 && odd.max == 3)
        #expect(even.median == 2.5 && even.relativeSpread == 3 / 2.5)
        // One point per series, a single x, names needing escapes: still a well-formed document.
        try Self.checkSVG(PlotSpec(title: "a <b> & c", xLabel: "x & y", yLabel: "tokens/s", logX: true,
                                   series: [.init(name: "h<1>", points: [(4, 10)]), .init(name: "b", points: []),
                                            .init(name: "n", points: [(4, 0)])]))
        try Self.checkSVG(PlotSpec(title: "linear", xLabel: "x", yLabel: "y", logX: false,
                                   series: [.init(name: "s", points: [(0, 1), (10, 2.5)])]))
    }

    @Test func invalidSizesAreRejected() {
        var s = Self.tinySizes
        s.prefixLengths = [100]
        #expect(throws: BenchError.self) { try s.validate() }
        s = Self.tinySizes
        s.throughputBatches = []
        #expect(throws: BenchError.self) { try s.validate() }
    }
}
