import ArgumentParser
import Foundation
import BanyanEngine
import BanyanBatch
import BanyanKernels

extension SchedulingPolicy: ExpressibleByArgument {}

struct Batch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an OpenAI Batch file offline (default), plan its shards, or merge shard outputs.",
        subcommands: [BatchRun.self, BatchPlan.self, BatchMergeCommand.self], defaultSubcommand: BatchRun.self)
}

/// `K/N` with 0 ≤ K < N.
struct ShardSpec: ExpressibleByArgument {
    let index: Int, count: Int
    init?(argument: String) {
        let parts = argument.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let k = Int(parts[0]), let n = Int(parts[1]), n >= 1, k >= 0, k < n else { return nil }
        index = k; count = n
    }
}

struct BatchRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run an OpenAI Batch file (/v1/completions, /v1/chat/completions lines) offline, sharing prompt prefixes.",
        discussion: """
        Each finished request is appended to --output (flushed and fsync'd) as it completes. Running again with the \
        same --output resumes: lines whose custom_id already has a record are skipped. A bad line gets an error \
        record and the job goes on. With --shard K/N only shard K's lines run (every process computes the same \
        partition; see `banyan batch plan`); `banyan batch merge` joins the shards' outputs.
        """)

    @OptionGroup var options: ModelOptions
    @Option(help: "Input .jsonl: one {custom_id, method, url, body} request per line.") var input: String
    @Option(help: "Output .jsonl: one record per input line (appended; resumed when it exists).") var output: String
    @Option(help: "How requests share prompt KV: prefix-tree (global prefix tree), fcfs-lru (FCFS + LRU prefix cache) or none.")
    var scheduler: SchedulingPolicy = .prefixTree
    @Option(help: "Most sequences decoded per step.") var maxBatch: Int?
    @Option(help: "Most rows (tokens) per step; prefill chunks fill what decode leaves.") var prefillChunk: Int?
    @Option(help: ArgumentHelp("Run only shard K of N (0 ≤ K < N): prefix groups kept whole, balanced by estimated cost.", valueName: "K/N"))
    var shard: ShardSpec?
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
                                  shard: shard.map { ($0.index, $0.count) }, progress: quiet ? nil : BatchProgress.forStandardError())
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
                ("shard", shard.map { .string("\($0.index)/\($0.count)") } ?? .null),
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

struct BatchPlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show how --shard K/N splits a batch input: requests, estimated cost and shared prefix tokens per shard.",
        discussion: """
        Prompts are tokenized with the model's tokenizer and chat template (the model is loaded for that). Requests \
        sharing a prefix of at least \(ShardPlan.minimumSharedTokens) tokens form a group kept on one shard; groups go, \
        largest estimated cost (unique prefill tokens + max_tokens × n) first, to the least-loaded shard; a group \
        costing more than total ÷ N is split, each part recomputing its shared prefix.
        """)

    @OptionGroup var options: ModelOptions
    @Option(help: "Input .jsonl.") var input: String
    @Option(help: "Number of shards N.") var shards: Int
    @Flag(help: "Also evaluate round-robin (file order) and random sharding of the same input.") var compare = false
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard shards >= 1 else { throw ValidationError("--shards must be at least 1, got \(shards)") }
    }

    func run() throws {
        guard FileManager.default.isReadableFile(atPath: input) else { throw CLIError("--input \(input): no such readable file") }
        let job = try BatchJob(engine: try options.makeEngine())
        let plan = try job.plan(input: URL(fileURLWithPath: input), shards: shards)
        var comparisons: [(String, ShardPlan.Evaluation)] = []
        if compare {
            let units = try job.planUnits(input: URL(fileURLWithPath: input))
            let order = Dictionary(uniqueKeysWithValues: units.enumerated().map { ($1.line, $0) })
            var rng = SplitMix64(seed: 0x5EED)
            let shuffled = Dictionary(uniqueKeysWithValues: units.map { ($0.line, Int(rng.next() % UInt64(shards))) })
            comparisons = [("round_robin", ShardPlan.evaluate(units: units, shards: shards) { order[$0]! % shards }),
                           ("random", ShardPlan.evaluate(units: units, shards: shards) { shuffled[$0]! })]
        }
        let perShard: [JSON] = plan.shards.map { s in
            .object([("shard", .int(s.index)), ("requests", .int(s.lines.count)), ("cost", .int(s.cost)),
                     ("shared_prefix_tokens", .int(s.sharedPrefixTokens)), ("groups", .int(s.groups))])
        }
        let fields: [(String, JSON)] = [
            ("shards", .int(plan.shardCount)), ("requests", .int(plan.shards.reduce(0) { $0 + $1.lines.count })),
            ("total_cost", .int(plan.totalCost)), ("groups", .int(plan.groupCount)), ("split_groups", .int(plan.splitGroupCount)),
            ("recomputed_prefix_tokens", .int(plan.recomputedPrefixTokens)), ("imbalance", .double(plan.imbalance)),
            ("per_shard", .array(perShard)),
        ] + (compare ? [("compare", .object(comparisons.map { name, e in
            (name, .object([("imbalance", .double(e.imbalance)), ("recomputed_prefix_tokens", .int(e.recomputedPrefixTokens))]))
        }))] : [])
        if json { print(JSON.object(fields).rendered); return }
        print(String(format: "%d requests in %d prefix groups (%d split) over %d shards: imbalance %.3f (max/mean cost), %d prefix tokens recomputed",
                     plan.shards.reduce(0) { $0 + $1.lines.count }, plan.groupCount, plan.splitGroupCount, plan.shardCount,
                     plan.imbalance, plan.recomputedPrefixTokens))
        for s in plan.shards {
            print("shard \(s.index): \(s.lines.count) requests, cost \(s.cost), shared prefix tokens \(s.sharedPrefixTokens), groups \(s.groups)")
        }
        for (name, e) in comparisons {
            print(String(format: "%@: imbalance %.3f, %d prefix tokens recomputed", name, e.imbalance, e.recomputedPrefixTokens))
        }
    }
}

struct BatchMergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Join shard outputs into one output in input order, checking that every input line has exactly one record.")

    @Option(help: "The input .jsonl the shards ran (for line order and custom_ids).") var input: String
    @Option(help: "The merged output .jsonl (written whole, atomically).") var output: String
    @Argument(help: "The shards' output files.") var shardOutputs: [String]

    func validate() throws {
        guard !shardOutputs.isEmpty else { throw ValidationError("give the shards' output files") }
    }

    func run() throws {
        let summary = try BatchMerge.merge(input: URL(fileURLWithPath: input), shardOutputs: shardOutputs.map { URL(fileURLWithPath: $0) },
                                           output: URL(fileURLWithPath: output))
        FileHandle.standardError.write(Data("merged \(summary.records) records from \(shardOutputs.count) shard outputs into \(output)\n".utf8))
    }
}
