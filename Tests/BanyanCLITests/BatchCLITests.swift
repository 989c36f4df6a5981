import Foundation
import Testing
import BanyanTestSupport

/// A token-prompt workload for builtin:stories260k: `count` lines, sampled with seeds, long enough
/// (with --max-batch 4 and one thread) to take a few seconds.
func batchWorkload(_ count: Int, maxTokens: Int) -> String {
    var rng = SeededRNG(seed: 11)
    return (0..<count).map { i in
        let prompt = [1, 330, 361, 140] + (0..<(4 + i % 9)).map { _ in Int(rng.next() % 500) + 3 }
        return "{\"custom_id\":\"job-\(i)\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\(prompt),"
            + "\"max_tokens\":\(maxTokens),\"temperature\":0.8,\"seed\":\(i),\"ignore_eos\":true}}"
    }.joined(separator: "\n") + "\n"
}

func recordLines(_ url: URL) -> [String] {
    ((try? String(contentsOf: url, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
}

/// custom_id -> the record's choices (what must not change between runs).
func choicesByID(_ lines: [String]) throws -> [String: String] {
    var out: [String: String] = [:]
    for l in lines {
        let r = try #require(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any])
        let id = try #require(r["custom_id"] as? String)
        let body = (r["response"] as? [String: Any])?["body"] as? [String: Any]
        let choices = try JSONSerialization.data(withJSONObject: body?["choices"] ?? NSNull(), options: [.sortedKeys, .fragmentsAllowed])
        #expect(out[id] == nil, "\(id) appears twice")
        out[id] = String(decoding: choices, as: UTF8.self)
    }
    return out
}

/// Lines over a few shared documents (a 40-token prefix each) plus loners, a bad line and a
/// duplicate custom_id: what sharding must keep exact.
func shardedWorkload() -> String {
    var rng = SeededRNG(seed: 23)
    var lines: [String] = []
    let documents = (0..<4).map { _ in [1] + (0..<40).map { _ in Int(rng.next() % 500) + 3 } }
    for i in 0..<30 {
        let prompt = i % 5 == 4 ? [1] + (0..<8).map { _ in Int(rng.next() % 500) + 3 }
            : documents[i % 4] + (0..<(3 + i % 4)).map { _ in Int(rng.next() % 500) + 3 }
        lines.append("{\"custom_id\":\"q-\(i)\",\"method\":\"POST\",\"url\":\"/v1/completions\",\"body\":{\"prompt\":\(prompt),"
                     + "\"max_tokens\":\(6 + i % 5),\"temperature\":0.8,\"n\":\(1 + i % 2),\"ignore_eos\":true}}")
        if i == 10 { lines.append("{not json") }
        if i == 20 { lines.append(lines[3]) }   // q-3 again: a duplicate_custom_id record
        if i == 25 { lines.append("\u{00A0}\t") }   // blank (Unicode whitespace): no record, for the job and for merge
    }
    return lines.joined(separator: "\n") + "\n"
}

@Suite("banyan batch")
struct BatchCLITests {
    /// `--shard K/N` runs + `batch merge` give, per custom_id, exactly the unsharded run's records
    /// (sampled with seeds derived from custom_id; outputs do not depend on what runs beside them),
    /// in input order; `batch plan --json` reports the partition; merge refuses incomplete shards.
    @Test func shardAndMerge() throws {
        let dir = try TemporaryFolder()
        let input = dir.url.appendingPathComponent("in.jsonl")
        try shardedWorkload().write(to: input, atomically: true, encoding: .utf8)
        let whole = dir.url.appendingPathComponent("whole.jsonl")
        let run = try BanyanBinary.run(["batch", "--threads", "1", "--quiet", "--input", input.path, "--output", whole.path])
        #expect(run.status == 0, "\(run)")
        let planRun = try BanyanBinary.run(["batch", "plan", "--threads", "1", "--input", input.path, "--shards", "3", "--json"])
        #expect(planRun.status == 0, "\(planRun)")
        let plan = try #require(try JSONSerialization.jsonObject(with: Data(planRun.stdout.utf8)) as? [String: Any])
        #expect(plan["shards"] as? Int == 3 && plan["requests"] as? Int == 30)
        let perShard = try #require(plan["per_shard"] as? [[String: Any]])
        #expect(perShard.count == 3 && perShard.reduce(0) { $0 + ($1["requests"] as? Int ?? 0) } == 30)
        #expect((plan["imbalance"] as? Double ?? 9) < 1.6)
        var outputs: [String] = []
        for k in 0..<3 {
            let out = dir.url.appendingPathComponent("shard-\(k).jsonl").path
            let r = try BanyanBinary.run(["batch", "--threads", "1", "--quiet", "--shard", "\(k)/3", "--input", input.path, "--output", out])
            #expect(r.status == 0, "\(r)")
            outputs.append(out)
        }
        // Merging two shards of three is refused and names what is missing.
        let partial = try BanyanBinary.run(["batch", "merge", "--input", input.path, "--output", dir.url.appendingPathComponent("p.jsonl").path,
                                            outputs[0], outputs[1]])
        #expect(partial.status != 0 && !partial.crashed && partial.stderr.contains("input lines have no record"), "\(partial)")
        let twice = try BanyanBinary.run(["batch", "merge", "--input", input.path, "--output", dir.url.appendingPathComponent("t.jsonl").path,
                                          outputs[0], outputs[1], outputs[2], outputs[2]])
        #expect(twice.status != 0 && twice.stderr.contains("is answered twice"), "\(twice)")
        let merged = dir.url.appendingPathComponent("merged.jsonl")
        let m = try BanyanBinary.run(["batch", "merge", "--input", input.path, "--output", merged.path] + outputs)
        #expect(m.status == 0, "\(m)")
        let mergedLines = recordLines(merged), wholeLines = recordLines(whole)
        #expect(mergedLines.count == 32)   // 30 requests, the bad line, the duplicate
        func valid(_ lines: [String]) -> [String] { lines.filter { !$0.contains("\"error\":{") } }
        #expect(try choicesByID(valid(mergedLines)) == (try choicesByID(valid(wholeLines))))
        // In input order: the custom_ids of the merged records follow the file.
        let ids = valid(mergedLines).compactMap { l in (try? JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any])?["custom_id"] as? String }
        #expect(ids == (0..<30).map { "q-\($0)" })
        #expect(mergedLines.filter { $0.contains("\"code\":\"invalid_json\"") }.count == 1)
        #expect(mergedLines.filter { $0.contains("\"code\":\"duplicate_custom_id\"") }.count == 1)
        // A bad --shard is a usage error.
        let bad = try BanyanBinary.run(["batch", "--shard", "3/3", "--input", input.path, "--output", whole.path])
        #expect(bad.status != 0 && !bad.crashed && bad.stderr.contains("--shard"), "\(bad)")
    }

    @Test("a job killed with SIGKILL and re-run loses nothing finished and equals an uninterrupted run")
    func resumeAfterKill() throws {
        let binary = try #require(BanyanBinary.url, "build banyan first")
        let dir = try TemporaryFolder()
        let input = dir.url.appendingPathComponent("in.jsonl")
        let killed = dir.url.appendingPathComponent("killed.jsonl"), whole = dir.url.appendingPathComponent("whole.jsonl")
        try batchWorkload(240, maxTokens: 48).write(to: input, atomically: true, encoding: .utf8)
        let args = ["batch", "--threads", "1", "--max-batch", "4", "--quiet", "--input", input.path]

        let process = Process()
        process.executableURL = binary
        process.arguments = args + ["--output", killed.path]
        process.standardError = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // Kill once some records are on disk (and well before the end).
        let deadline = Date().addingTimeInterval(120)
        while recordLines(killed).count < 10 && process.isRunning && Date() < deadline { usleep(20_000) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let before = recordLines(killed)
        #expect(process.terminationReason == .uncaughtSignal, "the job finished before it could be killed; make the workload bigger")
        #expect(before.count >= 10 && before.count < 240)
        let finishedBefore = try choicesByID(before.filter { $0.hasSuffix("}") })

        let rerun = try BanyanBinary.run(args + ["--output", killed.path])
        #expect(rerun.status == 0, "\(rerun)")
        let full = try BanyanBinary.run(args + ["--output", whole.path])
        #expect(full.status == 0, "\(full)")

        let resumed = try choicesByID(recordLines(killed)), reference = try choicesByID(recordLines(whole))
        #expect(resumed.count == 240 && reference.count == 240)
        #expect(resumed == reference)
        for (id, c) in finishedBefore { #expect(resumed[id] == c, "\(id) changed after resume") }
    }

    @Test("--json summary; --scheduler values; a missing input file is a one-line error")
    func summaryAndErrors() throws {
        let dir = try TemporaryFolder()
        let input = dir.url.appendingPathComponent("in.jsonl")
        try batchWorkload(6, maxTokens: 4).write(to: input, atomically: true, encoding: .utf8)
        for scheduler in ["prefix-tree", "fcfs-lru", "none"] {
            let out = dir.url.appendingPathComponent("\(scheduler).jsonl")
            let r = try BanyanBinary.run(["batch", "--threads", "1", "--quiet", "--json", "--scheduler", scheduler,
                                          "--input", input.path, "--output", out.path])
            #expect(r.status == 0, "\(r)")
            let summary = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            #expect(summary?["succeeded"] as? Int == 6 && summary?["completion_tokens"] as? Int == 24 && summary?["scheduler"] as? String == scheduler)
            #expect((summary?["kv_peak_bytes"] as? Int ?? 0) > 0)
        }
        let missing = try BanyanBinary.run(["batch", "--input", dir.url.appendingPathComponent("nope.jsonl").path, "--output", "x.jsonl"])
        #expect(missing.status != 0 && missing.stderr.contains("no such readable file") && missing.stdout.isEmpty, "\(missing)")
        let bad = try BanyanBinary.run(["batch", "--scheduler", "lru", "--input", input.path, "--output", "x.jsonl"])
        #expect(bad.status != 0 && bad.stderr.contains("lru"), "\(bad)")
    }
}
