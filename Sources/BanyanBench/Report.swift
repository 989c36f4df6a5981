import Foundation

/// One measured quantity over repeats: the median and the spread of the samples.
public struct Statistic: Codable, Sendable, Equatable {
    public var median: Double
    public var min: Double
    public var max: Double
    public var samples: [Double]

    public init(_ samples: [Double]) {
        precondition(!samples.isEmpty, "a statistic needs at least one sample")
        let sorted = samples.sorted()
        let n = sorted.count
        median = n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        min = sorted[0]
        max = sorted[n - 1]
        self.samples = samples
    }

    /// (max − min) / median: 0 for one sample.
    public var relativeSpread: Double { median != 0 ? (max - min) / median : 0 }

    /// The same statistic under a monotone increasing map (e.g. seconds → tokens per second with `k / x`
    /// is decreasing, so use `mapDecreasing`).
    public func map(_ f: (Double) -> Double) -> Statistic { Statistic(samples.map(f)) }
}

/// One point of a suite: a series (an attention mode or a variant of one) at some parameters.
/// `skipped` says why a point was not measured (does not fit the KV budget, exceeds the context);
/// its `metrics` are then empty.
public struct BenchPoint: Codable, Sendable {
    public var series: String
    /// Integer parameters of the point, e.g. `batch`, `prefix`, `suffix`, `gen`.
    public var parameters: [String: Int]
    /// Measured values by name with their unit in the name, e.g. `decode_tokens_per_s`, `kv_bytes`.
    public var metrics: [String: Statistic]
    public var skipped: String?

    public init(series: String, parameters: [String: Int], metrics: [String: Statistic] = [:], skipped: String? = nil) {
        self.series = series; self.parameters = parameters; self.metrics = metrics; self.skipped = skipped
    }

    public func median(_ metric: String) -> Double? { metrics[metric]?.median }
}

/// A fixed-width text table with a legend line saying what the columns mean.
public struct TextTable: Codable, Sendable {
    public var title: String
    public var legend: String
    public var headers: [String]
    public var rows: [[String]]

    public init(title: String, legend: String, headers: [String], rows: [[String]] = []) {
        self.title = title; self.legend = legend; self.headers = headers; self.rows = rows
    }

    public func rendered() -> String {
        var widths = headers.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = Swift.max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                let w = i < widths.count ? widths[i] : c.count
                let pad = String(repeating: " ", count: Swift.max(0, w - c.count))
                return i == 0 ? c + pad : pad + c  // first column left-aligned, numbers right-aligned
            }.joined(separator: "  ")
        }
        var out = "## \(title)\n\(legend)\n"
        out += line(headers) + "\n"
        out += line(widths.map { String(repeating: "-", count: $0) }) + "\n"
        for r in rows { out += line(r) + "\n" }
        return out
    }
}

/// What one suite measured: points, the printed table, closing sentences and its plot.
public struct SuiteReport: Codable, Sendable {
    public var suite: String
    public var title: String
    public var model: String?
    /// Fixed settings of the suite (prefix, gen, repeats, notes), as printed.
    public var settings: [String: String]
    public var points: [BenchPoint]
    public var table: TextTable
    public var summary: [String]
    public var plot: PlotSpec?
    /// File name of the SVG written for `plot` in the output folder, if any.
    public var plotFile: String?

    public init(suite: String, title: String, model: String?, settings: [String: String], points: [BenchPoint],
                table: TextTable, summary: [String], plot: PlotSpec?) {
        self.suite = suite; self.title = title; self.model = model; self.settings = settings; self.points = points
        self.table = table; self.summary = summary; self.plot = plot
    }

    /// The table, then the summary sentences.
    public func rendered() -> String {
        var out = table.rendered()
        if !settings.isEmpty {
            out += "settings: " + settings.keys.sorted().map { "\($0)=\(settings[$0]!)" }.joined(separator: ", ") + "\n"
        }
        for s in summary { out += s + "\n" }
        return out
    }
}

/// Everything one `banyan bench` run measured, with the machine it ran on (the `--json` output).
public struct BenchReport: Codable, Sendable {
    public var tool = "banyan bench"
    public var date: String
    public var command: [String]
    public var quick: Bool
    public var machine: MachineDescription
    public var suites: [SuiteReport]
    public var wallSeconds: Double

    public init(command: [String], quick: Bool, machine: MachineDescription, suites: [SuiteReport], wallSeconds: Double) {
        self.date = ISO8601DateFormatter().string(from: Date())
        self.command = command; self.quick = quick; self.machine = machine; self.suites = suites
        self.wallSeconds = wallSeconds
    }

    public func jsonData() throws -> Data { try reportJSON(self) }
}

/// A report as pretty JSON with sorted keys; non-finite numbers as "inf", "-inf", "nan".
func reportJSON(_ value: some Encodable) throws -> Data {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys]
    e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return try e.encode(value)
}

/// Number formatting for tables.
enum Format {
    static func number(_ x: Double, digits: Int = 3) -> String {
        guard x.isFinite else { return "-" }
        let a = abs(x)
        if a >= 1000 { return String(format: "%.0f", x) }
        if a >= 100 { return String(format: "%.1f", x) }
        if a >= 10 { return String(format: "%.2f", x) }
        return String(format: "%.\(digits)f", x)
    }

    /// `median ±spread%`.
    static func stat(_ s: Statistic?) -> String {
        guard let s else { return "-" }
        if s.samples.count < 2 { return number(s.median) }
        return number(s.median) + String(format: " ±%.0f%%", s.relativeSpread * 50)
    }

    static func ratio(_ x: Double?) -> String {
        guard let x, x.isFinite else { return "-" }
        return String(format: "%.2fx", x)
    }

    /// `x` as a whole percentage: 0.83 → "83%".
    static func percent(_ x: Double) -> String {
        guard x.isFinite else { return "-" }
        return String(format: "%.0f%%", 100 * x)
    }

    static func mib(_ bytes: Double) -> String { number(bytes / 1_048_576) }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return String(format: "%d:%02d", t / 60, t % 60)
    }
}
