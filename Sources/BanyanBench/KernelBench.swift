import Foundation
import BanyanKernels
import BanyanModel

/// One matmul shape of a model: `out[M, N] = x[M, K] · Wᵀ`, W `[N, K]` bf16.
public struct MatmulShape: Sendable, Codable {
    public var name: String
    public var k: Int
    public var n: Int
    public init(name: String, k: Int, n: Int) { self.name = name; self.k = k; self.n = n }

    /// The linear layers of `synthetic:tinyllama-1.1b` (hidden 2048, GQA kv 256, ffn 5632, vocab 32000).
    public static let tinyllama: [MatmulShape] = [
        MatmulShape(name: "q/o 2048x2048", k: 2048, n: 2048),
        MatmulShape(name: "k/v 2048x256", k: 2048, n: 256),
        MatmulShape(name: "gate/up 2048x5632", k: 2048, n: 5632),
        MatmulShape(name: "down 5632x2048", k: 5632, n: 2048),
        MatmulShape(name: "lm_head 2048x32000", k: 2048, n: 32000),
    ]
}

/// GFLOP/s and GB/s of the engine's matmul (and `matmulFast` where the CPU has AVX512_BF16).
public enum KernelBench {
    public static func run(shapes: [MatmulShape], rows: [Int], repeats: Int, minSeconds: Double, threads: ThreadPool,
                           progress: ProgressLine?) -> [BenchPoint] {
        var points: [BenchPoint] = []
        var kernels = ["matmul"]
        if KernelDispatch.fastMatmulAvailable { kernels.append("matmulFast") }
        kernels += quantizedKernels.map(\.name)
        for shape in shapes {
            let w = RandomWeights(rows: shape.n, cols: shape.k, seed: UInt64(shape.k * 31 + shape.n))
            // The same weights quantized (and packed) for the integer-product kernels.
            let quantized = quantizedKernels.map { (name: $0.name, matrix: w.matrix.quantized(to: $0.type, threads: threads)) }
            let maxM = rows.max() ?? 1
            let x = UnsafeMutablePointer<Float>.allocate(capacity: maxM * shape.k)
            let out = UnsafeMutablePointer<Float>.allocate(capacity: maxM * shape.n)
            for i in 0..<(maxM * shape.k) { x[i] = Float(i % 89) * 0.01 - 0.4 }
            for m in rows {
                for kernel in kernels {
                    let packed = quantized.first { $0.name == kernel }?.matrix.0.packed
                    let call = {
                        if kernel == "matmulFast" { matmulFast(x, rows: m, weight: w.matrix, out: out, pool: threads) }
                        else if let packed { quantizedMatmul(x, rows: m, weight: packed, out: out, pool: threads) }
                        else { matmul(x, rows: m, weight: w.matrix, out: out, pool: threads) }
                    }
                    call()  // warm-up (and page-in)
                    let samples = (0..<max(1, repeats)).map { _ in Timing.mean(minSeconds: minSeconds, call) }
                    let s = Statistic(samples)
                    let flops = 2 * Double(m * shape.n * shape.k)
                    let bytes = Double((packed?.byteCount ?? shape.n * shape.k * 2) + m * shape.k * 4 + m * shape.n * 4)
                    points.append(BenchPoint(series: kernel, parameters: ["m": m, "k": shape.k, "n": shape.n],
                                             metrics: ["seconds": s, "gflops": s.map { flops / $0 / 1e9 },
                                                       "gbps": s.map { bytes / $0 / 1e9 }]))
                    progress?.advance("\(kernel) \(shape.name) M=\(m)")
                }
            }
            x.deallocate(); out.deallocate()
        }
        return points
    }

    public static func pointCount(shapes: Int, rows: Int) -> Int {
        shapes * rows * ((KernelDispatch.fastMatmulAvailable ? 2 : 1) + quantizedKernels.count)
    }

    /// Integer-product kernels measured beside the float ones: series named by the ggml type.
    static let quantizedKernels: [(name: String, type: GGMLType)] = [("q8_0", .q8_0), ("q4_K", .q4_K), ("q6_K", .q6_K)]

    /// `bench kernels`: the measurements as a table beside the machine's peaks, and a plot of GFLOP/s vs M.
    public static func report(shapes: [MatmulShape], rows: [Int], repeats: Int, minSeconds: Double, machine: MachineDescription,
                              threads: ThreadPool, progress: ProgressLine?) -> SuiteReport {
        let points = run(shapes: shapes, rows: rows, repeats: repeats, minSeconds: minSeconds, threads: threads, progress: progress)
        var table = TextTable(title: "kernels: matmul out[M, N] = x[M, K] · Wᵀ, bf16 W, \(threads.threadCount) threads",
                              legend: "columns: kernel (matmul: float32 activations, the engine's path; matmulFast: bf16 activations; q8_0, q4_K, q6_K: the same W quantized, 8-bit activations, integer products, GB/s of the packed W), shape K×N, M rows; GFLOP/s (2·M·N·K) and GB/s (W + x + out bytes) with % of the measured peak / bandwidth",
                              headers: ["kernel", "shape KxN", "M", "ms", "GFLOP/s", "% peak", "GB/s", "% bw"])
        for p in points {
            let k = p.parameters["k"]!, n = p.parameters["n"]!
            let peak = p.series == "matmulFast" ? (machine.peakFastGFLOPs ?? machine.peakGFLOPs) : machine.peakGFLOPs
            let g = p.median("gflops")!, b = p.median("gbps")!
            table.rows.append([p.series, "\(k)x\(n)", "\(p.parameters["m"]!)", Format.stat(p.metrics["seconds"]!.map { $0 * 1e3 }),
                               Format.number(g), Format.percent(g / peak), Format.number(b),
                               Format.percent(b / machine.bandwidthGBps)])
        }
        var series: [PlotSpec.Series] = []
        for shape in shapes {
            for kernel in ["matmul", "matmulFast"] + quantizedKernels.map(\.name) {
                let pts = points.filter { $0.series == kernel && $0.parameters["k"] == shape.k && $0.parameters["n"] == shape.n }
                    .map { (Double($0.parameters["m"]!), $0.median("gflops")!) }
                if !pts.isEmpty { series.append(PlotSpec.Series(name: "\(kernel) \(shape.k)x\(shape.n)", points: pts)) }
            }
        }
        let m1 = points.filter { $0.series == "matmul" && $0.parameters["m"] == 1 }.compactMap { $0.median("gbps") }
        var summary = [String(format: "Machine: bandwidth %.1f GB/s, matmul peak %.1f GFLOP/s%@.", machine.bandwidthGBps, machine.peakGFLOPs,
                              machine.peakFastGFLOPs.map { String(format: ", matmulFast peak %.1f GFLOP/s", $0) } ?? "")]
        if let best = m1.max() {
            summary.append(String(format: "GEMV (M = 1) streams weights at up to %.1f GB/s (%.0f%% of the measured bandwidth).", best, 100 * best / machine.bandwidthGBps))
        }
        return SuiteReport(suite: "kernels", title: "Matmul kernels vs machine peaks", model: "synthetic:tinyllama-1.1b shapes",
                           settings: ["repeats": "\(repeats)"], points: points, table: table, summary: summary,
                           plot: PlotSpec(title: "Matmul GFLOP/s vs rows M (tinyllama-1.1b shapes, bf16)", xLabel: "M (rows)",
                                          yLabel: "GFLOP/s", logX: true, series: series))
    }
}
