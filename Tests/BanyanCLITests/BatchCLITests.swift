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

@Suite("banyan batch")
struct BatchCLITests {
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
