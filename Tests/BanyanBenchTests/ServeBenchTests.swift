import Testing
import Foundation
@testable import BanyanBench

/// `bench serve`'s pure parts: SSE framing, chunk → timing records, the token-id prompts and request
/// body, percentiles, the Prometheus reader, the report table. No server, no network, no timing asserts:
/// times are made up and fed in.
@Suite struct ServeBenchTests {
    // MARK: SSE

    static let stream = "data: {\"a\":1}\n\n: keep-alive comment\r\nevent: message\r\ndata: line one\r\ndata:line two\r\n\r\n"
        + "id: 7\ndata\n\ndata: [DONE]\n\n"
    static let events = ["{\"a\":1}", "line one\nline two", "", "[DONE]"]

    @Test func sseEventsInOnePiece() {
        var p = SSEParser()
        #expect(p.feed(Array(Self.stream.utf8)) == Self.events)
        #expect(p.finish() == nil)
    }

    /// The same events whatever the byte boundaries between pieces (every split point, and byte by byte).
    @Test func sseEventsAcrossAnySplit() {
        let bytes = Array(Self.stream.utf8)
        for cut in 0...bytes.count {
            var p = SSEParser()
            #expect(p.feed(bytes[..<cut]) + p.feed(bytes[cut...]) == Self.events, "split at \(cut)")
        }
        var p = SSEParser()
        #expect(bytes.flatMap { p.feed([$0]) } == Self.events)
    }

    @Test func sseLastEventWithoutBlankLine() {
        var p = SSEParser()
        #expect(p.feed(Array("data: x\n\ndata: y".utf8)) == ["x"])
        #expect(p.finish() == "y")
        #expect(p.finish() == nil)
    }

    // MARK: chunks → a request's record

    /// Feeds `(seconds, event data)` pairs as SSE bytes and finishes at the last time.
    static func record(_ events: [(Double, String)]) -> RequestRecord {
        var r = StreamRecorder(index: 3, sentAt: 1.5)
        for (t, e) in events { r.receive(Array("data: \(e)\n\n".utf8), at: t) }
        return r.finish(at: (events.last?.0 ?? 0) + 0.01)
    }

    /// Banyan's chunks: a `tokens` list per choice (one delta may carry several), then usage with cached_tokens.
    @Test func banyanChunks() {
        let r = Self.record([
            (0.50, #"{"choices":[{"index":0,"text":"","tokens":[17]}]}"#),
            (0.60, #"{"choices":[{"index":0,"text":"","tokens":[5,9]}]}"#),
            (0.65, #"{"choices":[{"index":0,"text":"","tokens":[8],"finish_reason":"length"}]}"#),
            (0.66, #"{"choices":[],"usage":{"prompt_tokens":1056,"completion_tokens":4,"total_tokens":1060,"prompt_tokens_details":{"cached_tokens":1024}}}"#),
            (0.66, "[DONE]"),
        ])
        #expect(r.error == nil && r.succeeded)
        #expect(r.index == 3 && r.sentAt == 1.5)
        #expect(r.timeToFirstToken == 0.50)
        // 0.10 s for two tokens, then 0.05 s for one.
        #expect(r.interTokenSeconds.count == 3)
        for (x, want) in zip(r.interTokenSeconds, [0.05, 0.05, 0.05]) { #expect(abs(x - want) < 1e-12) }
        #expect(r.outputTokens == 4 && r.promptTokens == 1056 && r.cachedPromptTokens == 1024)
    }

    /// llama-server's: one token of text per chunk, an empty-text chunk carries none, the cache count in
    /// `timings` when usage lacks it; the usage count wins over the chunks counted.
    @Test func llamaServerChunks() {
        let r = Self.record([
            (2.0, #"{"choices":[{"text":" t1","index":0,"logprobs":null,"finish_reason":null}],"object":"text_completion"}"#),
            (2.0, #"{"choices":[{"text":"","index":0,"finish_reason":null}]}"#),
            (2.5, #"{"choices":[{"text":" t2","index":0,"finish_reason":null}]}"#),
            (2.6, #"{"choices":[{"text":"","index":0,"finish_reason":"length"}],"usage":{"completion_tokens":3,"prompt_tokens":40},"timings":{"cache_n":32,"prompt_n":8}}"#),
            (2.6, "[DONE]"),
        ])
        #expect(r.succeeded)
        #expect(r.timeToFirstToken == 2.0)
        #expect(r.interTokenSeconds == [0.5])
        #expect(r.outputTokens == 3 && r.promptTokens == 40 && r.cachedPromptTokens == 32)
    }

    @Test func failedStreams() {
        let error = Self.record([(0.1, #"{"error":{"message":"prompt too long","type":"invalid_request_error"}}"#)])
        #expect(error.error == "server error: prompt too long" && !error.succeeded)
        let cut = Self.record([(0.1, #"{"choices":[{"text":"a"}]}"#)])
        #expect(cut.error == "stream ended without data: [DONE]")
        let garbage = Self.record([(0.1, "{not json"), (0.2, "[DONE]")])
        #expect(garbage.error == "undecodable chunk: {not json")
        let empty = Self.record([(0.1, "[DONE]")])
        #expect(empty.error == "no output token in the stream")
    }

    // MARK: what is sent

    @Test func promptsAreDeterministicSharedAndDistinct() {
        let a = ServePrompts(systemTokenCount: 1024, userTokenCount: 32, vocabularySize: 49152, seed: 7)
        let b = ServePrompts(systemTokenCount: 1024, userTokenCount: 32, vocabularySize: 49152, seed: 7)
        #expect(a == b && a.prompt(5) == b.prompt(5))
        #expect(a.system != ServePrompts(systemTokenCount: 1024, userTokenCount: 32, vocabularySize: 49152, seed: 8).system)
        let users = (0..<2000).map(a.user)
        #expect(Set(users.map(\.first!)).count == users.count, "user parts must differ from their first token")
        for i in [0, 1, 999] {
            let p = a.prompt(i)
            #expect(p.count == 1056 && Array(p.prefix(1024)) == a.system && Array(p.suffix(32)) == users[i])
            #expect(p.allSatisfy { (3..<49152).contains($0) })
        }
        // Ids stay inside a small vocabulary too.
        let tiny = ServePrompts(systemTokenCount: 50, userTokenCount: 3, vocabularySize: 10, seed: 1)
        #expect((0..<20).flatMap(tiny.prompt).allSatisfy { (3..<10).contains($0) })
    }

    @Test func requestBody() throws {
        let body = CompletionRequestBody(model: nil, prompt: [5, 6, 7], maxTokens: 64, temperature: 0, seed: 3)
        #expect(String(decoding: try body.encoded(), as: UTF8.self) ==
            #"{"ignore_eos":true,"max_tokens":64,"prompt":[5,6,7],"seed":3,"stream":true,"stream_options":{"include_usage":true},"temperature":0}"#)
        let named = CompletionRequestBody(model: "m", prompt: [4], maxTokens: 1, temperature: 0.5, seed: 0)
        #expect(String(decoding: try named.encoded(), as: UTF8.self).contains(#""model":"m""#))
    }

    @Test func configValidation() throws {
        var c = ServeBenchConfig(url: "http://127.0.0.1:8080")
        try c.validate()
        for bad in ["http://10.0.0.1:8080", "http://example.com:80", "https://127.0.0.1:8080", "http://127.0.0.1"] {
            c.url = bad
            #expect(throws: BenchError.self, "\(bad) accepted") { try c.validate() }
        }
        c.url = "http://localhost:9"
        c.arrival = .poisson
        #expect(throws: BenchError.self) { try c.validate() }
        c.rate = 2
        try c.validate()
        c.arrival = .closed
        #expect(throws: BenchError.self) { try c.validate() }
    }

    /// Poisson offsets: deterministic, increasing from 0, mean gap 1/rate (10000 gaps: the standard error
    /// of the mean is 1% of it, so 5% is a 5-sigma bound).
    @Test func poissonArrivals() {
        var c = ServeBenchConfig(url: "http://127.0.0.1:1")
        c.arrival = .poisson; c.rate = 4; c.seed = 11
        let t = c.arrivalOffsets(count: 10001, level: 0)
        #expect(t == c.arrivalOffsets(count: 10001, level: 0) && t != c.arrivalOffsets(count: 10001, level: 1))
        #expect(t[0] == 0 && zip(t, t.dropFirst()).allSatisfy { $0 <= $1 })
        #expect(abs(t.last! / 10000 - 0.25) < 0.25 * 0.05)
    }

    // MARK: summaries and the report

    /// HdrHistogram at 3 significant digits: a percentile is within 0.1% of the exact order statistic.
    @Test func latencyPercentiles() throws {
        let s = try #require(LatencySummary(seconds: (1...1000).map { Double($0) / 1000 }.shuffled()))
        #expect(s.count == 1000)
        #expect(abs(s.p50 - 0.500) <= 0.0005 && abs(s.p99 - 0.990) <= 0.00099 && abs(s.max - 1.0) <= 0.001)
        #expect(abs(s.mean - 0.5005) <= 0.0005)
        #expect(LatencySummary(seconds: []) == nil)
    }

    @Test func prometheusText() {
        let text = """
        # HELP banyan_kv_blocks_used KV cache blocks in use
        # TYPE banyan_kv_blocks_used gauge
        banyan_kv_blocks_used 42
        banyan_prompt_tokens_total 2112.0
        banyan_requests{state="running"} 3
        banyan_requests{state="waiting"} 4
        malformed_line
        """
        let m = parsePrometheus(text)
        #expect(m == ["banyan_kv_blocks_used": 42, "banyan_prompt_tokens_total": 2112, "banyan_requests": 7])
    }

    static func finished(_ index: Int, ttft: Double, prompt: Int?, cached: Int?) -> RequestRecord {
        var r = RequestRecord(index: index, sentAt: 0)
        r.timeToFirstToken = ttft; r.interTokenSeconds = [0.1, 0.1]; r.duration = ttft + 0.2; r.outputTokens = 3
        r.promptTokens = prompt; r.cachedPromptTokens = cached
        return r
    }

    /// Hit rate from Banyan's counter deltas when scraped, else from usage; failures counted, not summed.
    @Test func levelSummary() {
        var failed = RequestRecord(index: 2, sentAt: 0)
        failed.error = "HTTP 503: busy"
        let records = [Self.finished(0, ttft: 1, prompt: 100, cached: 0), Self.finished(1, ttft: 0.1, prompt: 100, cached: 90), failed]
        let lone = Self.finished(3, ttft: 0.05, prompt: 100, cached: 96)
        let fromUsage = ServeBench.summarize(clients: 2, records: records, wall: 2, lone: lone, peaks: nil, before: nil, after: nil)
        #expect(fromUsage.requests == 3 && fromUsage.failed == 1 && fromUsage.errors == ["HTTP 503: busy"])
        #expect(fromUsage.outputTokens == 6 && fromUsage.outputTokensPerSecond == 3)
        #expect(fromUsage.prefixHitRate == 0.45 && fromUsage.prefixHitSource == "usage")
        #expect(fromUsage.loneTimeToFirstToken == 0.05 && fromUsage.timeToFirstToken?.count == 2)
        let fromMetrics = ServeBench.summarize(
            clients: 2, records: records, wall: 2, lone: lone, peaks: (blocks: 40, bytes: nil),
            before: ["banyan_prompt_tokens_total": 1000, "banyan_prompt_tokens_cached_total": 500],
            after: ["banyan_prompt_tokens_total": 1200, "banyan_prompt_tokens_cached_total": 650])
        #expect(fromMetrics.prefixHitRate == 0.75 && fromMetrics.prefixHitSource == "metrics" && fromMetrics.peakKVBlocks == 40)
    }

    @Test func reportTable() throws {
        var c = ServeBenchConfig(url: "http://127.0.0.1:8080")
        c.clients = [1, 32]
        let records = [Self.finished(0, ttft: 0.25, prompt: 1056, cached: 1024)]
        let one = ServeBench.summarize(clients: 1, records: records, wall: 0.5, lone: records[0], peaks: (blocks: 34, bytes: 34 << 20),
                                       before: nil, after: nil)
        let none = ServeBench.summarize(clients: 32, records: [], wall: 900, lone: RequestRecord(index: 9, sentAt: 0), peaks: nil,
                                        before: nil, after: nil)
        let report = ServeBenchReport(date: "2026-12-02T09:00:00Z", command: ["banyan"], cpu: "Test CPU", server: "banyan", model: "synthetic:tiny",
                                      config: c, coldTimeToFirstToken: 2.5, levels: [one, none], wallSeconds: 901)
        #expect(report.table.rendered() == """
        ## bench serve: banyan (synthetic:tiny) at http://127.0.0.1:8080
        1024 shared + 32 own prompt tokens, 64 out (ignore_eos), closed loop; TTFT and ITL in ms; lone: one request after the load; cold TTFT 2500 ms; Test CPU
        clients  requests  failed  wall s  out tok/s  TTFT p50  TTFT p99  ITL p50  ITL p99  lone TTFT  peak KV blocks  peak KV MiB  prefix hit
        -------  --------  ------  ------  ---------  --------  --------  -------  -------  ---------  --------------  -----------  ----------
        1               1       0   0.500      6.000     250.0     250.0    100.0    100.0      250.0              34        34.00       97.0%
        32              0       0   900.0      0.000         -         -        -        -          -               -            -           -

        """)
        let decoded = try JSONDecoder().decode(ServeBenchReport.self, from: report.jsonData())
        #expect(decoded.levels.map(\.clients) == [1, 32] && decoded.levels[0].records == records && decoded.coldTimeToFirstToken == 2.5)
    }
}
