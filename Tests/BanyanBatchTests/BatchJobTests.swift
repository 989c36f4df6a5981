import Foundation
import Testing
import BanyanKernels
import BanyanModel
import BanyanEngine
import BanyanTokenizer
import BanyanBatch
import BanyanTestSupport

func makeEngine(_ spec: String, maxBatch: Int = 256, maxKVBytes: Int = 1 << 28) throws -> Engine {
    let pool = ThreadPool(threadCount: 1)
    let model = try Model.load(spec, threads: pool)
    var tokenizer: Tokenizer? = nil
    if let folder = model.folder, FileManager.default.fileExists(atPath: folder.appendingPathComponent("tokenizer.json").path) {
        tokenizer = try Tokenizer.load(path: folder.path)
    }
    var options = EngineOptions()
    options.threadCount = 1
    options.maxBatch = maxBatch
    options.maxKVBytes = maxKVBytes
    return try Engine(model: model, tokenizer: tokenizer, threads: pool, options: options)
}

/// A batch line as JSON text.
func line(_ id: String?, url: String = "/v1/completions", _ body: [String: Any]) -> String {
    var o: [String: Any] = ["method": "POST", "url": url, "body": body]
    if let id { o["custom_id"] = id }
    return String(decoding: try! JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
}

/// Runs `lines` as a job and returns the output records (in file order) and the summary.
func runJob(_ engine: Engine, _ lines: [String], policy: SchedulingPolicy = .prefixTree, folder: TemporaryFolder? = nil,
            output: URL? = nil) throws -> ([[String: Any]], BatchJobSummary) {
    let dir = try folder ?? TemporaryFolder()
    let input = dir.url.appendingPathComponent("in.jsonl")
    let out = output ?? dir.url.appendingPathComponent("out-\(policy.rawValue).jsonl")
    try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
    let summary = try BatchJob(engine: engine, policy: policy).run(input: input, output: out)
    return (try records(out), summary)
}

func records(_ url: URL) throws -> [[String: Any]] {
    try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map {
        try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
    }
}

func byID(_ records: [[String: Any]]) -> [String: [String: Any]] {
    var out: [String: [String: Any]] = [:]
    for r in records { if let id = r["custom_id"] as? String, r["error"] is NSNull { out[id] = r } }
    return out
}

func choices(_ record: [String: Any]?) -> [[String: Any]] {
    ((record?["response"] as? [String: Any])?["body"] as? [String: Any])?["choices"] as? [[String: Any]] ?? []
}

/// Prompts with shared prefixes of several depths (stories260k ids; 1 is BOS).
let sharedPrefix = [1, 330, 361, 140, 473, 465, 466, 290, 341, 408, 323, 414, 339, 260, 430, 430, 418, 303, 293, 427,
                    430, 341, 341, 408, 323, 414, 339, 260, 430, 283, 303, 422, 290, 341, 408, 323, 414, 339, 260, 430]

func workloadPrompts(_ count: Int, seed: UInt64) -> [[Int]] {
    var rng = SeededRNG(seed: seed)
    return (0..<count).map { i in
        let keep = [40, 33, 20, 5][i % 4]
        return Array(sharedPrefix.prefix(keep)) + (0..<(3 + i % 7)).map { _ in Int(rng.next() % 500) + 3 }
    }
}

@Suite("Batch jobs")
struct BatchJobTests {
    @Test("every choice equals generate run alone (greedy and seeded sampling, n > 1, prompt lists)",
          arguments: SchedulingPolicy.allCases)
    func batchInvariance(_ policy: SchedulingPolicy) throws {
        // maxBatch 5 forces waves and refills, so samples run beside different neighbours than alone.
        let engine = try makeEngine("builtin:stories260k", maxBatch: 5)
        let prompts = workloadPrompts(12, seed: 7)
        var lines: [String] = []
        for (i, p) in prompts.enumerated() {
            let sampled = i % 2 == 1
            var body: [String: Any] = ["prompt": p, "max_tokens": 6 + i % 5, "n": 1 + i % 3, "ignore_eos": true,
                                       "temperature": sampled ? 0.9 : 0, "seed": 100 + i]
            if sampled { body["top_p"] = 0.95 }
            if i % 4 == 3 { body["logprobs"] = 3 }
            lines.append(line("r\(i)", body))
        }
        // A prompt list: choice p * n + k is prompt p's sample k, drawn from RNG stream p * n + k.
        lines.append(line("list", ["prompt": [prompts[0], prompts[5], prompts[6]], "max_tokens": 5, "n": 2, "temperature": 1,
                                   "seed": 9, "ignore_eos": true]))
        let (out, summary) = try runJob(engine, lines, policy: policy)
        #expect(summary.succeeded == lines.count && summary.failed == 0)
        let results = byID(out)

        for (i, p) in prompts.enumerated() {
            var r = Request(prompt: p)
            r.n = 1 + i % 3
            r.maxTokens = 6 + i % 5
            r.sampling = SamplingParameters(temperature: i % 2 == 1 ? 0.9 : 0, topP: i % 2 == 1 ? 0.95 : 1, seed: UInt64(100 + i))
            r.ignoreEOS = true
            let alone = try engine.generate(r).completions
            let got = choices(results["r\(i)"])
            try #require(got.count == alone.count, "r\(i)")
            for (c, a) in zip(got, alone) {
                #expect(c["tokens"] as? [Int] == a.tokens, "r\(i) choice \(a.index) (\(policy))")
                if i % 4 == 3 {
                    let lp = (c["logprobs"] as? [String: Any])?["token_logprobs"] as? [Double]
                    // The engine's log-probabilities are bitwise batch-invariant (SchedulerTests checks that
                    // without JSON); here they went through Foundation's JSONSerialization, which on Linux does
                    // not parse shortest-representation doubles back exactly (off by an ulp ~1e-16), so 1e-12.
                    #expect(lp?.count == a.logprobs.count && zip(lp ?? [], a.logprobs).allSatisfy { abs($0 - $1) <= 1e-12 },
                            "r\(i) logprobs")
                }
            }
        }
        // generate with suffixes numbers streams the same way (suffix i, sample k: stream i * n + k).
        var r = Request(prompt: [1])
        let suffixes = [prompts[0], prompts[5], prompts[6]].map { Array($0.dropFirst()) }
        r.n = 2
        r.maxTokens = 5
        r.sampling = SamplingParameters(temperature: 1, seed: 9)
        r.ignoreEOS = true
        let alone = try engine.generate(r, suffixes: suffixes).completions
        let got = choices(results["list"])
        #expect(got.map { $0["index"] as? Int } == alone.map(\.index))
        #expect(got.map { $0["tokens"] as? [Int] } == alone.map(\.tokens))
    }

    @Test("text and chat prompts on a model with a tokenizer equal generate on the encoded prompt")
    func textAndChat() throws {
        let dir = try TemporaryFolder()
        let model = try dir.copyModel("llama-text")
        try editJSONObject(at: model.appendingPathComponent("tokenizer_config.json")) {
            $0["chat_template"] = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] | trim + ' [/INST]' }}{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}"
        }
        let engine = try makeEngine(model.path)
        let lines = [
            line("text", ["prompt": "Once upon a time", "max_tokens": 8, "temperature": 0, "echo": true, "logprobs": 2]),
            line("chat", url: "/v1/chat/completions", ["messages": [["role": "user", "content": " Hello there "]], "max_tokens": 6,
                                                        "temperature": 0.8, "seed": 4, "n": 2, "logprobs": true, "top_logprobs": 2]),
            line("raise", url: "/v1/chat/completions", ["messages": [["role": "user", "content": "x"]], "max_tokens": 2, "foo": 1]),
        ]
        let (out, _) = try runJob(engine, lines)
        let results = byID(out)

        var r = Request(prompt: try engine.encodePrompt("Once upon a time"))
        r.maxTokens = 8
        r.sampling = SamplingParameters(temperature: 0)
        let alone = try engine.generate(r).completions[0]
        let text = try #require(choices(results["text"]).first)
        #expect(text["tokens"] as? [Int] == alone.tokens)
        #expect(text["text"] as? String == "Once upon a time" + (alone.text ?? ""))
        let logprobs = try #require(text["logprobs"] as? [String: Any])
        let tokenLogprobs = try #require(logprobs["token_logprobs"] as? [Any])
        #expect(tokenLogprobs.count == r.prompt.count + alone.tokens.count && tokenLogprobs.first is NSNull)
        #expect((logprobs["tokens"] as? [String])?.count == tokenLogprobs.count)

        let template = "<s>[INST] Hello there [/INST]"
        var chat = Request(prompt: try #require(engine.tokenizer).encode(template, addSpecialTokens: false))
        chat.n = 2
        chat.maxTokens = 6
        chat.sampling = SamplingParameters(temperature: 0.8, seed: 4)
        let chatAlone = try engine.generate(chat).completions
        let got = choices(results["chat"])
        #expect(got.map { $0["tokens"] as? [Int] } == chatAlone.map(\.tokens))
        #expect(got.map { ($0["message"] as? [String: Any])?["content"] as? String } == chatAlone.map(\.text))
        let content = ((got.first?["logprobs"] as? [String: Any])?["content"] as? [[String: Any]]) ?? []
        #expect(content.count == chatAlone[0].tokens.count && (content.first?["top_logprobs"] as? [Any])?.count == 2)

        let bad = try #require(out.first { $0["custom_id"] as? String == "raise" })
        #expect((bad["error"] as? [String: Any])?["code"] as? String == "unknown_field")
    }

    @Test("each bad line gets its error record and the job goes on")
    func badLines() throws {
        let engine = try makeEngine("builtin:stories260k")
        let ok: [String: Any] = ["prompt": [1, 2, 3], "max_tokens": 2, "temperature": 0]
        func with(_ k: String, _ v: Any) -> [String: Any] { var b = ok; b[k] = v; return b }
        let cases: [(String, String, String)] = [   // (line, code, message fragment)
            ("{not json", "invalid_json", "not valid JSON"),
            ("[1, 2]", "invalid_json", "expected a JSON object"),
            (line(nil, ok), "missing_custom_id", "custom_id is missing"),
            (line("dup", ok), "duplicate_custom_id", "custom_id \"dup\" is already used"),
            (line("unknown", with("frobnicate", 1)), "unknown_field", "unknown field body.frobnicate"),
            (line("n0", with("n", 0)), "invalid_request", "body.n must be at least 1, got 0"),
            (line("max0", with("max_tokens", 0)), "invalid_request", "body.max_tokens must be at least 1, got 0"),
            (line("temp", with("temperature", -0.5)), "invalid_request", "body.temperature must be ≥ 0"),
            (line("topp0", with("top_p", 0)), "invalid_request", "body.top_p must be in (0, 1]"),
            (line("topp2", with("top_p", 1.5)), "invalid_request", "body.top_p must be in (0, 1]"),
            (line("lp21", with("logprobs", 21)), "invalid_request", "body.logprobs must be in 0...20, got 21"),
            (line("ntype", with("n", "two")), "invalid_request", "body.n must be an integer, got \"two\""),
            (line("text", with("prompt", "hello")), "invalid_request", "text prompts need a tokenizer"),
            (line("stop", with("stop", "x")), "invalid_request", "body.stop needs a tokenizer"),
            (line("long", with("prompt", Array(repeating: 5, count: 600))), "context_length_exceeded", "600 tokens exceed the model's context of 512"),
            (line("long2", with("max_tokens", 510)), "context_length_exceeded", "513 tokens exceed"),
            (line("badid", with("prompt", [1, 99999])), "invalid_request", "token id 99999 out of range"),
            (line("url", url: "/v1/embeddings", ok), "invalid_request", "url \"/v1/embeddings\" unsupported"),
            (line("chat", url: "/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]]]), "invalid_request", "chat completions need a tokenizer"),
            (line("penalty", with("frequency_penalty", 0.5)), "invalid_request", "body.frequency_penalty 0.5 unsupported"),
            (line("envelope", ok).replacingOccurrences(of: "\"method\"", with: "\"extra\":1,\"method\""), "unknown_field", "unknown field extra"),
        ]
        let lines = [line("dup", ok), line("fine", with("frequency_penalty", 0))] + cases.map(\.0)
        let (out, summary) = try runJob(engine, lines)
        #expect(summary.succeeded == 2 && summary.failed == cases.count)
        #expect(out.count == lines.count)
        for (i, (_, code, fragment)) in cases.enumerated() {
            let lineNumber = i + 3
            let record = out.first { ($0["error"] as? [String: Any])?["line"] as? Int == lineNumber }
            let error = record?["error"] as? [String: Any]
            #expect(error?["code"] as? String == code, "line \(lineNumber): \(String(describing: record))")
            #expect((error?["message"] as? String)?.contains(fragment) == true, "line \(lineNumber): \(String(describing: error?["message"]))")
            #expect(record?["response"] is NSNull)
        }
        #expect(choices(byID(out)["fine"]).count == 1)
    }

    @Test("resume: finished custom_ids are skipped, a torn last line is cut, the result equals one run")
    func resume() throws {
        let engine = try makeEngine("builtin:stories260k")
        let lines = workloadPrompts(8, seed: 3).enumerated().map { i, p in
            line("q\(i)", ["prompt": p, "max_tokens": 4, "temperature": 0.7, "seed": i, "n": 2])
        } + ["{broken"]
        let dir = try TemporaryFolder()
        let full = dir.url.appendingPathComponent("full.jsonl"), partial = dir.url.appendingPathComponent("partial.jsonl")
        let (reference, _) = try runJob(engine, lines, folder: dir, output: full)

        // Keep three whole records and half of the fourth, as a kill mid-write leaves it.
        let text = try String(contentsOf: full, encoding: .utf8)
        let kept = text.split(separator: "\n", omittingEmptySubsequences: false)
        try (kept.prefix(3).joined(separator: "\n") + "\n" + kept[3].prefix(40)).write(to: partial, atomically: true, encoding: .utf8)
        let (resumed, summary) = try runJob(engine, lines, folder: dir, output: partial)
        #expect(summary.skipped == 3 && summary.succeeded + summary.failed == lines.count - 3)
        #expect(resumed.count == lines.count)
        func key(_ r: [String: Any]) -> String { (r["custom_id"] as? String) ?? "line \(((r["error"] as? [String: Any])?["line"] as? Int) ?? 0)" }
        #expect(Set(resumed.map(key)).count == lines.count)
        let a = Dictionary(uniqueKeysWithValues: reference.map { (key($0), $0) })
        for r in resumed {
            let b = try #require(a[key(r)])
            #expect(NSDictionary(dictionary: withoutCreated(r)) == NSDictionary(dictionary: withoutCreated(b)), "\(key(r))")
        }
        // A third run has nothing left to do.
        let (again, s3) = try runJob(engine, lines, folder: dir, output: partial)
        #expect(again.count == lines.count && s3.skipped == lines.count && s3.succeeded == 0)
    }

    @Test("an output file that is not ours is refused, not overwritten")
    func foreignOutput() throws {
        let engine = try makeEngine("builtin:stories260k")
        let dir = try TemporaryFolder()
        let out = dir.url.appendingPathComponent("out.jsonl")
        try "hello\n".write(to: out, atomically: true, encoding: .utf8)
        #expect(throws: BatchError.self) { try runJob(engine, [line("a", ["prompt": [1, 2]])], folder: dir, output: out) }
        #expect(try String(contentsOf: out, encoding: .utf8) == "hello\n")
    }
}

/// A record without its `created` timestamp (the only field that differs between runs).
func withoutCreated(_ r: [String: Any]) -> [String: Any] {
    var r = r
    if var response = r["response"] as? [String: Any], var body = response["body"] as? [String: Any] {
        body["created"] = nil
        response["body"] = body
        r["response"] = response
    }
    return r
}
