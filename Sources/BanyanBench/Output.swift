import Foundation

/// Writes a run's files into `--out`: one SVG per suite with a plot, `report.json`, `tables.txt`.
public enum BenchOutput {
    /// Writes the files and records each plot's file name in the report; returns the paths written.
    @discardableResult
    public static func write(_ report: inout BenchReport, to directory: String) throws -> [String] {
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw BenchError.io(path: directory, message: "cannot create the output folder (\(error.localizedDescription))")
        }
        var written: [String] = []
        func put(_ name: String, _ data: Data) throws {
            let path = (directory as NSString).appendingPathComponent(name)
            do { try data.write(to: URL(fileURLWithPath: path)) } catch {
                throw BenchError.io(path: path, message: "cannot write (\(error.localizedDescription))")
            }
            written.append(path)
        }
        for i in report.suites.indices {
            guard let plot = report.suites[i].plot else { continue }
            let name = "\(report.suites[i].suite).svg"
            try put(name, Data(SVGPlot.render(plot).utf8))
            report.suites[i].plotFile = name
        }
        try put("tables.txt", Data((report.machine.summary + "\n\n" + report.suites.map { $0.rendered() }.joined(separator: "\n")).utf8))
        try put("report.json", try report.jsonData())
        return written
    }

    /// What the tables mean, printed before the first suite of a run.
    public static let introduction = """
    Banyan bench: decoding many sequences that share a prompt, in three attention modes measured in one process.
      hydragen  the shared prefix's KV is read once per decode step for all sequences (batched matrix products)
      baseline  each sequence reads the whole prefix on its own (paged attention with prefix caching)
      none      attention skipped entirely: the ceiling set by the rest of the model (its outputs are meaningless)
    Each point is repeated; tables show the median and ±half the spread (max − min) in percent.
    """
}
