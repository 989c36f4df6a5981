import Foundation
import BanyanKernels

/// The machine a benchmark ran on, with its measured peaks (so every ratio has its roofline beside it).
public struct MachineDescription: Codable, Sendable {
    /// `model name` from /proc/cpuinfo (or "unknown").
    public var cpu: String
    public var cores: Int
    public var threads: Int
    public var memoryBytes: Int
    /// Matmul kernel path in use (`KernelDispatch.description`).
    public var kernels: String
    /// Streaming read bandwidth over a ≥ 1 GiB buffer with all threads, GB/s (10⁹ bytes).
    public var bandwidthGBps: Double
    /// Best product rate of the engine's matmul (`matmul`, float32 activations) on a cache-resident shape, GFLOP/s.
    public var peakGFLOPs: Double
    /// Same with `matmulFast` (bf16 activations, `vdpbf16ps`) when the CPU has AVX512_BF16.
    public var peakFastGFLOPs: Double?
    /// Instruction roofs, all threads: register-only float32 FMA chains and `vdpbf16ps` chains
    /// (nil where the CPU lacks them). No real product reaches these; they bound what a kernel could.
    public var instructionPeakGFLOPs: Double?
    public var instructionPeakBF16GFLOPs: Double?
    public var os: String

    /// One line for a table header.
    public var summary: String {
        var s = "\(cpu), \(cores) cores, \(threads) threads, \(kernels); bandwidth \(Format.number(bandwidthGBps)) GB/s, "
        s += "matmul peak \(Format.number(peakGFLOPs)) GFLOP/s"
        if let p = peakFastGFLOPs { s += " (bf16 fast \(Format.number(p)))" }
        if let f = instructionPeakGFLOPs {
            s += "; instruction roof f32 FMA \(Format.number(f))"
            if let b = instructionPeakBF16GFLOPs { s += ", bf16 dot \(Format.number(b))" }
            s += " GFLOP/s"
        }
        return s
    }

    /// Describes this machine, running both probes on `threads` (about 2–4 s).
    public static func measure(threads: ThreadPool, bandwidthBytes: Int = 1 << 30) -> MachineDescription {
        let bw = Probes.bandwidth(threads: threads, byteCount: bandwidthBytes)
        let peak = Probes.peakMatmul(threads: threads, fast: false)
        let fast = KernelDispatch.fastMatmulAvailable ? Probes.peakMatmul(threads: threads, fast: true) : nil
        return MachineDescription(cpu: cpuModel(), cores: ProcessInfo.processInfo.activeProcessorCount,
                                  threads: threads.threadCount, memoryBytes: Int(ProcessInfo.processInfo.physicalMemory),
                                  kernels: KernelDispatch.description, bandwidthGBps: bw, peakGFLOPs: peak,
                                  peakFastGFLOPs: fast,
                                  instructionPeakGFLOPs: Probes.instructionPeak(.f32FMA, threads: threads),
                                  instructionPeakBF16GFLOPs: Probes.instructionPeak(.bf16Dot, threads: threads),
                                  os: ProcessInfo.processInfo.operatingSystemVersionString)
    }

    static func cpuModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown" }
        var name = "unknown", flags = ""
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { continue }
            if parts[0] == "model name", name == "unknown" { name = parts[1] }
            if parts[0] == "flags", flags.isEmpty { flags = parts[1] }
        }
        let has = Set(flags.split(separator: " ").map(String.init))
        let isa = ["avx512f", "avx512_bf16", "avx2"].filter(has.contains)
        return isa.isEmpty ? name : "\(name) [\(isa.joined(separator: " "))]"
    }
}

/// Machine probes: memory bandwidth and the fastest product rate our kernels reach.
public enum Probes {
    /// Streaming read bandwidth in GB/s: every thread sums its share of a `byteCount` float buffer with
    /// four independent SIMD accumulators (enough loads in flight to saturate memory, not the adders).
    /// Best of five passes after one warm-up pass that also commits the pages.
    public static func bandwidth(threads: ThreadPool, byteCount: Int) -> Double {
        let count = byteCount / 4
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: count)
        defer { buffer.deallocate() }
        let chunk = 1 << 20  // floats per task: 4 MiB
        let tasks = (count + chunk - 1) / chunk
        threads.parallelFor(tasks) { t in
            let lo = t * chunk, hi = min(count, lo + chunk)
            for i in lo..<hi { buffer[i] = Float(i & 1023) * 1e-3 }
        }
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: tasks)
        defer { sums.deallocate() }
        var best = 0.0
        for pass in 0..<6 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            threads.parallelFor(tasks) { t in
                let lo = t * chunk, hi = min(count, lo + chunk)
                var a = SIMD16<Float>(), b = a, c = a, d = a
                var i = lo
                let raw = UnsafeRawPointer(buffer)
                while i + 64 <= hi {
                    a += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
                    b += raw.loadUnaligned(fromByteOffset: (i + 16) * 4, as: SIMD16<Float>.self)
                    c += raw.loadUnaligned(fromByteOffset: (i + 32) * 4, as: SIMD16<Float>.self)
                    d += raw.loadUnaligned(fromByteOffset: (i + 48) * 4, as: SIMD16<Float>.self)
                    i += 64
                }
                var s = (a + b + c + d).sum()
                while i < hi { s += buffer[i]; i += 1 }
                sums[t] = s
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            if pass > 0 { best = max(best, Double(count * 4) / seconds / 1e9) }
        }
        // Keep the sums observable so the loads cannot be optimised away.
        var total: Float = 0
        for t in 0..<tasks { total += sums[t] }
        if total == -1 { print("") }
        return best
    }

    /// Instruction roof in GFLOP/s with every thread running register-only chains (best of 3
    /// passes of ~50 ms); nil where the CPU lacks the instructions.
    public static func instructionPeak(_ kind: InstructionPeak.Kind, threads: ThreadPool) -> Double? {
        let iterations = 4_000_000
        let tasks = threads.threadCount
        let flops = UnsafeMutablePointer<Double>.allocate(capacity: tasks)
        defer { flops.deallocate() }
        var best = 0.0
        for _ in 0..<3 {
            let t0 = DispatchTime.now().uptimeNanoseconds
            threads.parallelFor(tasks) { t in flops[t] = InstructionPeak.run(kind, iterations: iterations) }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let total = (0..<tasks).reduce(0.0) { $0 + flops[$1] }
            if total == 0 { return nil }
            best = max(best, total / seconds / 1e9)
        }
        return best
    }

    /// Peak product rate in GFLOP/s: the engine's matmul (or `matmulFast`) on a shape whose weights
    /// (bf16, 96 × 1024 per task) and activations stay in L2, so it measures arithmetic, not memory.
    public static func peakMatmul(threads: ThreadPool, fast: Bool) -> Double {
        let m = 64, k = 1024, n = 96 * threads.threadCount * 4
        let w = RandomWeights(rows: n, cols: k, seed: 7)
        let x = UnsafeMutablePointer<Float>.allocate(capacity: m * k)
        let out = UnsafeMutablePointer<Float>.allocate(capacity: m * n)
        defer { x.deallocate(); out.deallocate() }
        for i in 0..<(m * k) { x[i] = Float(i % 97) * 0.01 }
        let flops = 2.0 * Double(m * n * k)
        let t = Timing.best(minSeconds: 0.3) {
            if fast { matmulFast(x, rows: m, weight: w.matrix, out: out, pool: threads) }
            else { matmul(x, rows: m, weight: w.matrix, out: out, pool: threads) }
        }
        return flops / t / 1e9
    }
}

/// A bf16 weight matrix of uniform random values in ±0.05, owning its memory.
final class RandomWeights: @unchecked Sendable {
    let matrix: WeightMatrix
    private let storage: UnsafeMutablePointer<UInt16>

    init(rows: Int, cols: Int, seed: UInt64) {
        storage = .allocate(capacity: max(1, rows * cols))
        var state = seed
        for i in 0..<(rows * cols) {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            storage[i] = floatToBF16((Float(state >> 40) / Float(1 << 24) - 0.5) * 0.1)
        }
        matrix = WeightMatrix(dtype: .bf16, rows: rows, cols: cols, base: UnsafeRawPointer(storage))
    }
    deinit { storage.deallocate() }
}

/// Wall-clock timing helpers.
enum Timing {
    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    static func seconds(since t0: UInt64) -> Double { Double(now() - t0) / 1e9 }

    /// Seconds of one call of `body`: the best of repeated calls for at least `minSeconds` (≥ 3 calls, one warm-up).
    static func best(minSeconds: Double, _ body: () -> Void) -> Double {
        body()
        var best = Double.infinity, total = 0.0, calls = 0
        while calls < 3 || total < minSeconds {
            let t0 = now()
            body()
            let s = seconds(since: t0)
            best = min(best, s); total += s; calls += 1
        }
        return best
    }

    /// Mean seconds per call over one batch of calls lasting at least `minSeconds` (one call minimum).
    static func mean(minSeconds: Double, _ body: () -> Void) -> Double {
        var total = 0.0, calls = 0
        while calls < 1 || total < minSeconds {
            let t0 = now()
            body()
            total += seconds(since: t0); calls += 1
        }
        return total / Double(calls)
    }
}

/// Progress on stderr: points done / total, elapsed, ETA. On a terminal one line redrawn with `\r`;
/// otherwise one short line per finished point, so CI logs stay readable.
public final class ProgressLine: @unchecked Sendable {
    let total: Int
    let enabled: Bool
    let isTTY: Bool
    let start = Timing.now()
    private(set) var done = 0

    public init(total: Int, enabled: Bool) {
        self.total = max(1, total)
        self.enabled = enabled
        isTTY = isatty(2) != 0
    }

    /// Marks one point finished; `label` names it.
    public func advance(_ label: String) {
        done += 1
        guard enabled else { return }
        let elapsed = Timing.seconds(since: start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let text = String(format: "[%d/%d %3.0f%%] elapsed %@ ETA %@  %@", done, total, 100 * Double(done) / Double(total),
                          Format.duration(elapsed), Format.duration(eta), label)
        if isTTY {
            let padded = text.count < 100 ? text + String(repeating: " ", count: 100 - text.count) : text
            FileHandle.standardError.write(Data(("\r" + padded + (done >= total ? "\n" : "")).utf8))
        } else {
            FileHandle.standardError.write(Data((text + "\n").utf8))
        }
    }

    /// Ends the line early (an error, or fewer points than planned).
    public func finish() {
        if enabled && isTTY && done < total { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
