import Foundation
import BanyanEngine
import BanyanModel
import BanyanOpenAI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a job did (this run only; resumed lines count as `skipped`).
public struct BatchJobSummary: Sendable {
    /// Non-empty input lines.
    public var lineCount = 0
    /// Lines that already had a record in the output file.
    public var skipped = 0
    public var succeeded = 0
    public var failed = 0
    public var promptTokens = 0
    public var completionTokens = 0
    public var wallSeconds = 0.0
    public var stats: BatchStats? = nil
}

/// Runs an OpenAI Batch input file through one engine: parses every line, skips lines the output
/// file already answers (resume), runs the rest as one `runBatch` call and appends each record,
/// flushed and fsync'd, as soon as its request finishes, so a killed job loses only requests in flight.
public struct BatchJob {
    public let engine: Engine
    public let policy: SchedulingPolicy
    let parser: BatchInputParser
    let writer: RecordWriter

    public init(engine: Engine, policy: SchedulingPolicy = .prefixTree) throws {
        self.engine = engine
        self.policy = policy
        let template = try ChatTemplate.load(model: engine.model)
        parser = BatchInputParser(engine: engine, chatTemplate: template)
        writer = RecordWriter(modelName: engine.model.name, tokenizer: engine.tokenizer)
    }

    /// One input line after parsing, in file order; every shard process sees the same list.
    enum Entry {
        case failure(line: Int, customID: String?, BatchError)
        /// A valid line whose custom_id an earlier line already uses.
        case duplicate(BatchItem)
        case item(BatchItem)

        var line: Int {
            switch self {
            case .failure(let line, _, _): line
            case .duplicate(let item), .item(let item): item.line
            }
        }
    }

    /// Parses every non-blank line of `input`.
    func entries(_ input: URL) throws -> [Entry] {
        guard let data = FileManager.default.contents(atPath: input.path) else { throw BatchError.job("cannot read \(input.path)") }
        var entries: [Entry] = []
        var ids = Set<String>()
        for (lineNumber, text) in nonBlankLines(data) {
            switch parser.parse(text, line: lineNumber) {
            case .failure(let line, let id, let error):
                entries.append(.failure(line: line, customID: id, error))
                if let id { ids.insert(id) }
            case .item(let item):
                entries.append(ids.contains(item.customID) ? .duplicate(item) : .item(item))
                ids.insert(item.customID)
            }
        }
        return entries
    }

    /// The partition of `input` into `shards` (see `ShardPlan`): the same in every process.
    public func plan(input: URL, shards: Int) throws -> ShardPlan {
        ShardPlan(entries: try entries(input), shards: shards)
    }

    /// The partition units of `input` (valid lines in file order), for comparing assignments.
    public func planUnits(input: URL) throws -> [ShardPlan.Unit] {
        ShardPlan.units(try entries(input))
    }

    /// Runs the job, or only shard `shard.index` of `shard.count` (its own output file; resumable).
    public func run(input: URL, output: URL, shard: (index: Int, count: Int)? = nil, progress: BatchProgress? = nil) throws -> BatchJobSummary {
        let start = DispatchTime.now()
        let all = try entries(input)
        let plan = shard.map { ShardPlan(entries: all, shards: $0.count) }
        let done = try OutputFile.resume(output)
        let file = try OutputFile(output)
        var summary = BatchJobSummary()

        // Lines: records for bad ones now; valid ones not yet answered go to the engine.
        var items: [BatchItem] = []
        var seen = Set<String>()
        for entry in all {
            if let plan, let shard, plan.shard(ofLine: entry.line) != shard.index {
                // Another shard's line: only its custom_id matters here (for the resume rule below).
                if case .failure(_, let id?, _) = entry { seen.insert(id) }
                if case .item(let item) = entry { seen.insert(item.customID) }
                continue
            }
            summary.lineCount += 1
            if done.errorLines.contains(entry.line) { summary.skipped += 1; continue }
            switch entry {
            case .failure(let line, let id, let error):
                if let id, done.customIDs.contains(id), !seen.contains(id) { seen.insert(id); summary.skipped += 1; continue }
                if let id { seen.insert(id) }
                try file.append(writer.failure(line: line, customID: id, code: error.code, message: error.description))
                summary.failed += 1
            case .duplicate(let item):
                try file.append(writer.failure(line: item.line, customID: item.customID, code: "duplicate_custom_id",
                                               message: "custom_id \"\(item.customID)\" is already used by an earlier line"))
                summary.failed += 1
            case .item(let item):
                seen.insert(item.customID)
                if done.customIDs.contains(item.customID) { summary.skipped += 1; continue }
                items.append(item)
            }
        }
        progress?.start(total: summary.lineCount, alreadyDone: summary.lineCount - items.count)

        // One engine request per prompt; a line's record is written when all its prompts are done.
        var requests: [Request] = []
        var owner: [(item: Int, prompt: Int)] = []
        for (i, item) in items.enumerated() {
            for (p, r) in item.body.requests.enumerated() { requests.append(r); owner.append((i, p)) }
        }
        var outputs: [[BatchOutput?]] = items.map { [BatchOutput?](repeating: nil, count: $0.body.requests.count) }
        var remaining = items.map(\.body.requests.count)
        var firstError: [(any Error)?] = items.map { _ in nil }
        var writeError: (any Error)? = nil
        summary.stats = engine.runBatch(requests, policy: policy) { r, result in
            let (i, p) = owner[r]
            switch result {
            case .success(let o):
                outputs[i][p] = o
                summary.completionTokens += o.completionTokens
                summary.promptTokens += o.promptTokens
            case .failure(let e):
                if firstError[i] == nil { firstError[i] = items[i].body.requests.count > 1 ? PromptError(index: p, error: e) : e }
            }
            remaining[i] -= 1
            guard remaining[i] == 0 else { return }
            let item = items[i]
            let record: String
            if let e = firstError[i] {
                let underlying = (e as? PromptError)?.error ?? e
                record = writer.failure(line: item.line, customID: item.customID, code: errorCode(underlying), message: "\(e)")
                summary.failed += 1
            } else {
                record = writer.success(item, outputs[i].map { $0! })
                summary.succeeded += 1
            }
            outputs[i] = []
            do { try file.append(record) } catch { if writeError == nil { writeError = error } }
            progress?.update(done: 1, generatedTokens: summary.completionTokens)
        }
        if let writeError { throw writeError }
        summary.wallSeconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        progress?.finish(generatedTokens: summary.completionTokens)
        return summary
    }
}

/// A failure of one prompt of a multi-prompt line.
struct PromptError: Error, CustomStringConvertible {
    let index: Int
    let error: any Error
    var description: String { "prompt \(index): \(error)" }
}

/// The output file: records appended with O_APPEND, each write followed by fsync.
final class OutputFile {
    let fd: Int32
    let path: String

    init(_ url: URL) throws {
        path = url.path
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { throw BatchError.job("cannot open \(path) for writing: \(String(cString: strerror(errno)))") }
    }
    deinit { close(fd) }

    func append(_ record: String) throws {
        let bytes = Array((record + "\n").utf8)
        var written = 0
        while written < bytes.count {
            let n = bytes[written...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; throw BatchError.job("writing \(path): \(String(cString: strerror(errno)))") }
            written += n
        }
        guard fsync(fd) == 0 else { throw BatchError.job("fsync \(path): \(String(cString: strerror(errno)))") }
    }

    /// What an existing output file already answers. A torn last line (a kill mid-write) is cut off;
    /// any other line that is not a record means the file is not ours, and the job stops.
    static func resume(_ url: URL) throws -> (customIDs: Set<String>, errorLines: Set<Int>) {
        guard var data = FileManager.default.contents(atPath: url.path), !data.isEmpty else { return ([], []) }
        if data.last != UInt8(ascii: "\n") {
            let keep = (data.lastIndex(of: UInt8(ascii: "\n")).map { $0 + 1 }) ?? 0
            let handle = try FileHandle(forWritingTo: url)
            try handle.truncate(atOffset: UInt64(keep))
            try handle.close()
            data = data.prefix(keep)
        }
        var ids = Set<String>(), lines = Set<Int>()
        for (i, raw) in data.split(separator: UInt8(ascii: "\n")).enumerated() {
            guard let record = JSONValue.parse(Data(raw)), record.objectValue?["response"] != nil || record["error"] != nil else {
                throw BatchError.job("\(url.path) line \(i + 1) is not a batch output record; give a new --output file or remove the line")
            }
            if let e = record["error"] {
                if let line = e["line"]?.intValue { lines.insert(line) }
            } else if let id = record["custom_id"]?.stringValue {
                ids.insert(id)
            }
        }
        return (ids, lines)
    }
}

/// Requests done / total, tokens/s and ETA on stderr: one line redrawn with \r on a terminal,
/// a plain line every `interval` seconds otherwise.
public final class BatchProgress {
    public enum Style: Sendable { case terminal, lines(interval: Double) }
    let style: Style
    var total = 0, done = 0, doneAtStart = 0, tokens = 0
    var start = DispatchTime.now()
    var lastDraw = 0.0
    let sink: (String) -> Void

    public init(style: Style, sink: @escaping (String) -> Void = { FileHandle.standardError.write(Data($0.utf8)) }) {
        self.style = style
        self.sink = sink
    }

    /// `.terminal` when stderr is a TTY, else plain lines every 10 s.
    public static func forStandardError() -> BatchProgress {
        BatchProgress(style: isatty(STDERR_FILENO) != 0 ? .terminal : .lines(interval: 10))
    }

    func start(total: Int, alreadyDone: Int) {
        self.total = total
        done = alreadyDone
        doneAtStart = alreadyDone
        start = DispatchTime.now()
        draw(force: true)
    }

    /// `generatedTokens`: all generated so far in this run.
    func update(done finished: Int, generatedTokens: Int) {
        done += finished
        tokens = generatedTokens
        draw(force: false)
    }

    func finish(generatedTokens: Int) {
        tokens = generatedTokens
        draw(force: true)
        if case .terminal = style { sink("\n") }
    }

    var elapsed: Double { Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9 }

    /// The status line, e.g. `[#####.....] 250/500 requests  812.4 tokens/s  ETA 0:42`.
    func line() -> String {
        let t = elapsed
        let width = 20
        let filled = total == 0 ? width : width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let ranNow = done - doneAtStart
        var eta = "--"
        if ranNow > 0 && done < total {
            let s = Int((t / Double(ranNow) * Double(total - done)).rounded())
            eta = s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
        } else if done >= total {
            eta = "done"
        }
        return String(format: "[%@] %d/%d requests  %.1f tokens/s  ETA %@", bar, done, total, t > 0 ? Double(tokens) / t : 0, eta)
    }

    func draw(force: Bool) {
        let t = elapsed
        switch style {
        case .terminal:
            guard force || t - lastDraw >= 0.1 else { return }
            sink("\r\u{1B}[K" + line())
        case .lines(let interval):
            guard force || t - lastDraw >= interval else { return }
            sink(line() + "\n")
        }
        lastDraw = t
    }
}
