import ArgumentParser
import Foundation
import BanyanEngine
import BanyanBatch

extension SchedulingPolicy: ExpressibleByArgument {}

struct Batch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an OpenAI Batch file (/v1/completions, /v1/chat/completions lines) offline, sharing prompt prefixes.",
        discussion: """
        Each finished request is appended to --output (flushed and fsync'd) as it completes. Running again with the \
        same --output resumes: lines whose custom_id already has a record are skipped. A bad line gets an error \
        record and the job goes on.
        """)

    @OptionGroup var options: ModelOptions
    @Option(help: "Input .jsonl: one {custom_id, method, url, body} request per line.") var input: String
    @Option(help: "Output .jsonl: one record per input line (appended; resumed when it exists).") var output: String
    @Option(help: "How requests share prompt KV: prefix-tree (global prefix tree), fcfs-lru (FCFS + LRU prefix cache) or none.")
    var scheduler: SchedulingPolicy = .prefixTree
    @Option(help: "Most sequences decoded per step.") var maxBatch: Int?
    @Option(help: "Most rows (tokens) per step; prefill chunks fill what decode leaves.") var prefillChunk: Int?
    @Flag(help: "No progress bar on stderr.") var quiet = false
    @Flag(help: "Print a JSON summary (counts, tokens, wall time, tokens/s, peak KV bytes) on stdout.") var json = false

    func validate() throws {
        if let b = maxBatch, b < 1 { throw ValidationError("--max-batch must be at least 1, got \(b)") }
        if let c = prefillChunk, c < 1 { throw ValidationError("--prefill-chunk must be at least 1, got \(c)") }
    }

    func run() throws {
        guard FileManager.default.isReadableFile(atPath: input) else { throw CLIError("--input \(input): no such readable file") }
        let engine = try options.makeEngine()
        if let b = maxBatch { engine.options.maxBatch = b }
        if let c = prefillChunk { engine.options.maxBatchedTokens = c }
        let job = try BatchJob(engine: engine, policy: scheduler)
        let summary = try job.run(input: URL(fileURLWithPath: input), output: URL(fileURLWithPath: output),
                                  progress: quiet ? nil : BatchProgress.forStandardError())
        let tokensPerSecond = summary.wallSeconds > 0 ? Double(summary.completionTokens) / summary.wallSeconds : 0
        let peak = summary.stats?.kvPeakBytes ?? 0
        if json {
            print(JSON.object([
                ("lines", .int(summary.lineCount)), ("skipped", .int(summary.skipped)), ("succeeded", .int(summary.succeeded)),
                ("failed", .int(summary.failed)), ("prompt_tokens", .int(summary.promptTokens)),
                ("completion_tokens", .int(summary.completionTokens)), ("wall_s", .double(summary.wallSeconds)),
                ("tokens_per_s", .double(tokensPerSecond)), ("kv_peak_bytes", .int(peak)),
                ("prefill_rows", .int(summary.stats?.prefillRows ?? 0)), ("decode_rows", .int(summary.stats?.decodeRows ?? 0)),
                ("steps", .int(summary.stats?.steps ?? 0)), ("scheduler", .string(scheduler.rawValue)),
            ]).rendered)
        }
        if !quiet {
            FileHandle.standardError.write(Data(String(
                format: "%d lines: %d done now, %d failed, %d already done; %d prompt + %d generated tokens in %.2f s (%.1f tokens/s); peak KV %d bytes (%@)\n",
                summary.lineCount, summary.succeeded, summary.failed, summary.skipped, summary.promptTokens, summary.completionTokens,
                summary.wallSeconds, tokensPerSecond, peak, scheduler.rawValue).utf8))
        }
    }
}
