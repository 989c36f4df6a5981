import Foundation
import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import BanyanEngine

/// How a level's requests arrive.
public enum ServeArrival: String, Codable, Sendable, CaseIterable {
    /// Each client sends its next request when its previous one ends.
    case closed
    /// Exponential gaps at `rate` requests/s; the level's client count caps the requests in flight.
    case poisson
}

/// Settings of one `banyan bench serve` run: the workload, the levels and the bounds.
public struct ServeBenchConfig: Codable, Sendable {
    /// `http://HOST:PORT` of an OpenAI-compatible server on this machine.
    public var url: String
    public var systemTokenCount = 1024
    public var userTokenCount = 32
    public var outputTokenCount = 64
    /// Concurrency levels, run in order against the same server.
    public var clients = [1, 8, 32, 64]
    public var requestsPerClient = 1
    /// Requests per level instead of clients × requestsPerClient.
    public var totalRequests: Int?
    public var arrival = ServeArrival.closed
    /// Requests per second (poisson only).
    public var rate: Double?
    /// Prompt ids are drawn in 3..<vocabularySize; 32000 fits both smollm2 (49152) and tinyllama (32000).
    public var vocabularySize = 32000
    public var seed: UInt64 = 0
    public var temperature = 0.0
    /// A level sends nothing new after this long and abandons what is still streaming.
    public var secondsPerLevel = 900.0
    /// One lone request before the first level: its time to first token is the cold one.
    public var warmup = true
    /// The `model` field of each request (nil: not sent; both servers serve one model).
    public var model: String?

    public init(url: String) { self.url = url }

    public func validate() throws {
        guard let u = URL(string: url), u.scheme == "http", let host = u.host, u.port != nil,
              host == "localhost" || host == "::1" || host.hasPrefix("127.") else {
            throw BenchError.invalidArgument("serve: --url must be http://127.0.0.1:PORT (loopback only), got \(url)")
        }
        let counts = [("--system-tokens", systemTokenCount), ("--user-tokens", userTokenCount), ("--output-tokens", outputTokenCount),
                      ("--requests-per-client", requestsPerClient), ("--requests", totalRequests ?? 1)]
        for (flag, v) in counts where v < 1 { throw BenchError.invalidArgument("serve: \(flag) must be ≥ 1, got \(v)") }
        guard !clients.isEmpty, clients.allSatisfy({ $0 >= 1 }) else {
            throw BenchError.invalidArgument("serve: --clients must list counts ≥ 1, got \(clients)")
        }
        guard vocabularySize > 3 else { throw BenchError.invalidArgument("serve: --vocab-size must be > 3, got \(vocabularySize)") }
        guard secondsPerLevel > 0 else { throw BenchError.invalidArgument("serve: --seconds-per-level must be > 0") }
        switch (arrival, rate) {
        case (.poisson, nil): throw BenchError.invalidArgument("serve: --arrival poisson needs --rate (requests/s)")
        case (.poisson, let r?) where !(r > 0): throw BenchError.invalidArgument("serve: --rate must be > 0, got \(r)")
        case (.closed, _?): throw BenchError.invalidArgument("serve: --rate applies to --arrival poisson only")
        default: break
        }
    }

    /// Requests sent at a level with `clients` clients.
    public func requestCount(clients: Int) -> Int { totalRequests ?? clients * requestsPerClient }

    /// Seconds from a level's start at which its requests are sent (poisson only; deterministic in the seed).
    public func arrivalOffsets(count: Int, level: Int) -> [Double] {
        guard let rate else { return [] }
        var rng = SequenceRNG(seed: seed, index: level)
        var t = 0.0
        return (0..<count).map { _ in
            defer { t += -log(1 - rng.unit()) / rate }
            return t
        }
    }
}

/// One concurrency level's results.
public struct ServeLevelResult: Codable, Sendable {
    public var clients: Int
    public var requests: Int
    public var failed: Int
    /// First send to last byte.
    public var wallSeconds: Double
    public var outputTokens: Int
    public var outputTokensPerSecond: Double
    public var timeToFirstToken: LatencySummary?
    public var interTokenLatency: LatencySummary?
    /// Time to first token of one lone request sent after the load (its system prompt cached, if the server caches).
    public var loneTimeToFirstToken: Double?
    /// Banyan's `/metrics`, polled during the level: most KV blocks in use (prefix-cache blocks included).
    public var peakKVBlocks: Int?
    public var peakKVBytes: Int?
    /// Cached prompt tokens / prompt tokens over the level's requests.
    public var prefixHitRate: Double?
    /// `metrics` (Banyan's counters) or `usage` (the responses' cached_tokens / timings.cache_n).
    public var prefixHitSource: String?
    /// The first few failures' messages.
    public var errors: [String]
    public var records: [RequestRecord]
}

/// Everything a `bench serve` run measured (the `--json` file).
public struct ServeBenchReport: Codable, Sendable {
    public var tool = "banyan bench serve"
    public var date: String
    public var command: [String]
    /// `model name` from /proc/cpuinfo.
    public var cpu: String
    /// `banyan` when `/metrics` has Banyan's gauges, else `openai` (llama-server).
    public var server: String
    /// The first id `/v1/models` lists.
    public var model: String?
    public var config: ServeBenchConfig
    /// The warm-up request's time to first token (cold when the server was just started).
    public var coldTimeToFirstToken: Double?
    public var levels: [ServeLevelResult]
    public var wallSeconds: Double

    public func jsonData() throws -> Data { try reportJSON(self) }

    public var table: TextTable {
        let c = config
        var t = TextTable(
            title: "bench serve: \(server)\(model.map { " (\($0))" } ?? "") at \(c.url)",
            legend: "\(c.systemTokenCount) shared + \(c.userTokenCount) own prompt tokens, \(c.outputTokenCount) out (ignore_eos), "
                + "\(c.arrival == .closed ? "closed loop" : "poisson \(c.rate ?? 0)/s"); TTFT and ITL in ms; lone: one request after the load; "
                + "cold TTFT \(coldTimeToFirstToken.map { Format.number($0 * 1000) } ?? "-") ms; \(cpu)",
            headers: ["clients", "requests", "failed", "wall s", "out tok/s", "TTFT p50", "TTFT p99", "ITL p50", "ITL p99",
                      "lone TTFT", "peak KV blocks", "peak KV MiB", "prefix hit"])
        func ms(_ x: Double?) -> String { x.map { Format.number($0 * 1000) } ?? "-" }
        for l in levels {
            t.rows.append([String(l.clients), String(l.requests), String(l.failed), Format.number(l.wallSeconds),
                           Format.number(l.outputTokensPerSecond), ms(l.timeToFirstToken?.p50), ms(l.timeToFirstToken?.p99),
                           ms(l.interTokenLatency?.p50), ms(l.interTokenLatency?.p99), ms(l.loneTimeToFirstToken),
                           l.peakKVBlocks.map(String.init) ?? "-", l.peakKVBytes.map { Format.mib(Double($0)) } ?? "-",
                           l.prefixHitRate.map { String(format: "%.1f%%", $0 * 100) } ?? "-"])
        }
        return t
    }
}

/// Parses the Prometheus text format into sample values by metric name (labels dropped, values of
/// one name summed): all `bench serve` reads are unlabelled gauges and counters.
public func parsePrometheus(_ text: String) -> [String: Double] {
    var values: [String: Double] = [:]
    for line in text.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
        let parts = line.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count >= 2, let v = Double(parts[1]) else { continue }
        let name = parts[0].split(separator: "{", maxSplits: 1)[0]
        values[String(name), default: 0] += v
    }
    return values
}

/// Drives an OpenAI-compatible server with streamed token-id completions and measures each level.
public final class ServeBench: Sendable {
    public let config: ServeBenchConfig
    let prompts: ServePrompts
    let http: HTTPClient
    let log: @Sendable (String) -> Void

    public init(config: ServeBenchConfig, log: @escaping @Sendable (String) -> Void) throws {
        try config.validate()
        self.config = config
        self.log = log
        prompts = ServePrompts(systemTokenCount: config.systemTokenCount, userTokenCount: config.userTokenCount,
                               vocabularySize: config.vocabularySize, seed: config.seed)
        var c = HTTPClient.Configuration()
        // Every stream in flight holds a connection; AHC's default pool opens at most 8 per host.
        c.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: (config.clients.max() ?? 1) + 4)
        c.timeout = .init(connect: .seconds(10))
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
    }

    /// Runs the warm-up and every level; always shuts the HTTP client down.
    public func run(command: [String]) async throws -> ServeBenchReport {
        do {
            let report = try await measure(command: command)
            try await http.shutdown()
            return report
        } catch {
            try? await http.shutdown()
            throw error
        }
    }

    private func measure(command: [String]) async throws -> ServeBenchReport {
        let start = ContinuousClock.now
        let metrics = await scrape()
        let isBanyan = metrics?.keys.contains { $0.hasPrefix("banyan_") } ?? false
        let model = await modelName()
        log("server: \(isBanyan ? "banyan" : "openai")\(model.map { ", model \($0)" } ?? "")")
        var nextIndex = 0
        var cold: Double?
        if config.warmup {
            let r = await send(index: nextIndex, sentAt: 0, deadline: .now() + .seconds(Int64(config.secondsPerLevel)))
            nextIndex += 1
            guard r.succeeded else { throw BenchError.server(url: config.url, message: "the warm-up request failed: \(r.error ?? "?")") }
            cold = r.timeToFirstToken
            log("warm-up: TTFT \(Format.number((cold ?? 0) * 1000)) ms")
        }
        var levels: [ServeLevelResult] = []
        for (i, clients) in config.clients.enumerated() {
            let level = await runLevel(clients: clients, levelIndex: i, firstIndex: nextIndex, isBanyan: isBanyan)
            nextIndex += config.requestCount(clients: clients) + 1  // the level's indices and its lone request's
            levels.append(level)
            log("clients \(clients): \(level.requests - level.failed)/\(level.requests) ok, \(Format.number(level.outputTokensPerSecond)) tok/s, "
                + "TTFT p50 \(level.timeToFirstToken.map { Format.number($0.p50 * 1000) } ?? "-") ms")
        }
        return ServeBenchReport(date: ISO8601DateFormatter().string(from: Date()), command: command, cpu: MachineDescription.cpuModel(),
                                server: isBanyan ? "banyan" : "openai", model: model, config: config, coldTimeToFirstToken: cold,
                                levels: levels, wallSeconds: seconds(ContinuousClock.now - start))
    }

    private func runLevel(clients: Int, levelIndex: Int, firstIndex: Int, isBanyan: Bool) async -> ServeLevelResult {
        let count = config.requestCount(clients: clients)
        let before = isBanyan ? await scrape() : nil
        let poller = isBanyan ? Task { await self.pollPeaks() } : nil
        let levelStart = ContinuousClock.now
        let deadline = NIODeadline.now() + .milliseconds(Int64(config.secondsPerLevel * 1000))
        let stopAt = levelStart + .milliseconds(Int64(config.secondsPerLevel * 1000))
        var records: [RequestRecord] = []
        switch config.arrival {
        case .closed:
            records = await withTaskGroup(of: [RequestRecord].self) { group in
                for c in 0..<min(clients, count) {
                    group.addTask {
                        var mine: [RequestRecord] = []
                        // Client c sends requests c, c + clients, ...: no shared counter needed.
                        for k in stride(from: c, to: count, by: clients) where ContinuousClock.now < stopAt {
                            mine.append(await self.send(index: firstIndex + k, sentAt: self.seconds(ContinuousClock.now - levelStart), deadline: deadline))
                        }
                        return mine
                    }
                }
                return await group.reduce(into: []) { $0 += $1 }
            }
        case .poisson:
            let offsets = config.arrivalOffsets(count: count, level: levelIndex)
            records = await withTaskGroup(of: [RequestRecord].self) { group in
                var all: [RequestRecord] = []
                var inFlight = 0
                for (k, offset) in offsets.enumerated() {
                    let at = levelStart + .milliseconds(Int64(offset * 1000))
                    guard at < stopAt else { break }
                    if inFlight == clients, let r = await group.next() { all += r; inFlight -= 1 }
                    try? await Task.sleep(until: at, clock: .continuous)
                    group.addTask { [await self.send(index: firstIndex + k, sentAt: self.seconds(ContinuousClock.now - levelStart), deadline: deadline)] }
                    inFlight += 1
                }
                return await group.reduce(into: all) { $0 += $1 }
            }
        }
        let wall = seconds(ContinuousClock.now - levelStart)
        poller?.cancel()
        let peaks = await poller?.value
        let after = isBanyan ? await scrape() : nil
        // The lone request after the load: same system prompt, a user part nobody sent.
        let lone = await send(index: firstIndex + count, sentAt: 0, deadline: .now() + .milliseconds(Int64(config.secondsPerLevel * 1000)))
        return Self.summarize(clients: clients, records: records.sorted { $0.index < $1.index }, wall: wall, lone: lone,
                         peaks: peaks, before: before, after: after)
    }

    /// A level's result from its records; the prefix hit rate from Banyan's counters (`before`/`after`
    /// scrapes) when there are some, else from the responses' usage.
    static func summarize(clients: Int, records: [RequestRecord], wall: Double, lone: RequestRecord, peaks: (blocks: Int?, bytes: Int?)?,
                   before: [String: Double]?, after: [String: Double]?) -> ServeLevelResult {
        let ok = records.filter(\.succeeded)
        let out = ok.reduce(0) { $0 + $1.outputTokens }
        var hit: Double?, source: String?
        if let b = before, let a = after, let p1 = a["banyan_prompt_tokens_total"], let c1 = a["banyan_prompt_tokens_cached_total"] {
            let prompt = p1 - (b["banyan_prompt_tokens_total"] ?? 0), cached = c1 - (b["banyan_prompt_tokens_cached_total"] ?? 0)
            if prompt > 0 { hit = cached / prompt; source = "metrics" }
        }
        if hit == nil {
            let known = ok.filter { $0.promptTokens != nil && $0.cachedPromptTokens != nil }
            let prompt = known.reduce(0) { $0 + $1.promptTokens! }
            if !known.isEmpty, prompt > 0 { hit = Double(known.reduce(0) { $0 + $1.cachedPromptTokens! }) / Double(prompt); source = "usage" }
        }
        return ServeLevelResult(clients: clients, requests: records.count, failed: records.count - ok.count, wallSeconds: wall,
                                outputTokens: out, outputTokensPerSecond: wall > 0 ? Double(out) / wall : 0,
                                timeToFirstToken: LatencySummary(seconds: ok.compactMap(\.timeToFirstToken)),
                                interTokenLatency: LatencySummary(seconds: ok.flatMap(\.interTokenSeconds)),
                                loneTimeToFirstToken: lone.succeeded ? lone.timeToFirstToken : nil,
                                peakKVBlocks: peaks?.blocks, peakKVBytes: peaks?.bytes, prefixHitRate: hit, prefixHitSource: source,
                                errors: Array(records.compactMap(\.error).prefix(5)), records: records)
    }

    /// One streamed completion, timed from the send to each chunk; never throws (failures are recorded).
    func send(index: Int, sentAt: Double, deadline: NIODeadline) async -> RequestRecord {
        var recorder = StreamRecorder(index: index, sentAt: sentAt)
        let start = ContinuousClock.now
        do {
            var request = HTTPClientRequest(url: config.url + "/v1/completions")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            // A fresh connection per request: a kept-alive one the server has closed after its last
            // stream fails the next send ("I/O on closed channel"); a loopback connect costs microseconds.
            request.headers.add(name: "Connection", value: "close")
            let body = try CompletionRequestBody(model: config.model, prompt: prompts.prompt(index), maxTokens: config.outputTokenCount,
                                                 temperature: config.temperature, seed: config.seed).encoded()
            request.body = .bytes(ByteBuffer(bytes: body))
            let response = try await http.execute(request, deadline: deadline)
            guard response.status == .ok else {
                let text = (try? await response.body.collect(upTo: 1 << 16)).map { String(buffer: $0) } ?? ""
                var r = recorder.finish(at: seconds(ContinuousClock.now - start))
                r.error = "HTTP \(response.status.code): \(text.prefix(300))"
                return r
            }
            for try await buffer in response.body {
                recorder.receive(buffer.readableBytesView, at: seconds(ContinuousClock.now - start))
            }
            return recorder.finish(at: seconds(ContinuousClock.now - start))
        } catch {
            var r = recorder.finish(at: seconds(ContinuousClock.now - start))
            r.error = "\(error)"
            return r
        }
    }

    /// `/metrics` as values by name; nil when the server has none (llama-server without --metrics).
    func scrape() async -> [String: Double]? {
        guard let body = await get("/metrics", upTo: 1 << 22) else { return nil }
        return parsePrometheus(String(buffer: body))
    }

    /// The body of `GET path` when the answer is 200 (nil on any failure), on a connection of its own.
    func get(_ path: String, upTo maxBytes: Int) async -> ByteBuffer? {
        var request = HTTPClientRequest(url: config.url + path)
        request.headers.add(name: "Connection", value: "close")
        guard let response = try? await http.execute(request, timeout: .seconds(10)), response.status == .ok else { return nil }
        return try? await response.body.collect(upTo: maxBytes)
    }

    /// Polls Banyan's KV gauges every 250 ms until cancelled; returns their peaks.
    func pollPeaks() async -> (blocks: Int?, bytes: Int?) {
        var blocks: Int?, bytes: Int?
        while !Task.isCancelled {
            if let m = await scrape() {
                if let b = m["banyan_kv_blocks_used"] { blocks = max(blocks ?? 0, Int(b)) }
                // Bytes when the server exports them, directly or per block.
                if let v = m["banyan_kv_bytes_used"] ?? m["banyan_kv_block_bytes"].flatMap({ per in m["banyan_kv_blocks_used"].map { $0 * per } }) {
                    bytes = max(bytes ?? 0, Int(v))
                }
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        return (blocks, bytes)
    }

    /// The first model id `/v1/models` lists, if any.
    func modelName() async -> String? {
        struct Models: Decodable { struct Entry: Decodable { var id: String }; var data: [Entry] }
        guard let body = await get("/v1/models", upTo: 1 << 20),
              let models = try? JSONDecoder().decode(Models.self, from: Data(body.readableBytesView)) else { return nil }
        return models.data.first?.id
    }

    func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
