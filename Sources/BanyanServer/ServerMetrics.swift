import Foundation
import Synchronization
import Prometheus
import BanyanEngine

/// The `/metrics` registry: engine state (copied from `EngineLoop.metrics` at each scrape) and
/// latencies the server measures itself from event arrival times (time to first token, inter-token).
final class ServerMetrics: Sendable {
    let registry: PrometheusCollectorRegistry
    let running, waiting, kvUsed, kvTotal, kvCached, kvBlockBytes: Gauge
    let promptTokens, cachedPromptTokens, generatedTokens, finished, aborted, failed, preemptions, steps: Counter
    /// Responses whose client went away before the end (their engine requests were aborted).
    let clientDisconnects: Counter
    let timeToFirstToken, interTokenLatency: ValueHistogram
    /// Engine totals already added to the counters (counters only go up; the engine gives totals).
    private let counted = Mutex<[Int]>([])

    init() {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        func name(_ metric: String, _ unit: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "banyan", metricName: metric, unitName: unit, helpText: help)
        }
        func gauge(_ metric: String, _ help: String) -> Gauge { registry.makeGauge(descriptor: name(metric, "", help)) }
        func counter(_ metric: String, _ help: String) -> Counter { registry.makeCounter(descriptor: name(metric, "total", help)) }
        running = gauge("requests_running", "Requests being prefilled or decoded")
        waiting = gauge("requests_waiting", "Requests waiting to start (or preempted)")
        kvUsed = gauge("kv_blocks_used", "KV cache blocks in use (including prefix-cache blocks)")
        kvTotal = gauge("kv_blocks_total", "KV cache blocks within the budget")
        kvCached = gauge("kv_blocks_cached", "KV cache blocks held only by the prefix cache (evictable)")
        kvBlockBytes = gauge("kv_block_bytes", "Bytes of one KV cache block (all layers, K and V)")
        promptTokens = counter("prompt_tokens", "Prompt tokens of finished requests")
        cachedPromptTokens = counter("prompt_tokens_cached", "Prompt tokens served from the prefix cache")
        generatedTokens = counter("generation_tokens", "Generated tokens")
        finished = counter("requests_finished", "Requests that finished")
        aborted = counter("requests_aborted", "Requests aborted (client gone)")
        failed = counter("requests_failed", "Requests that failed in the engine")
        preemptions = counter("preemptions", "Requests preempted to free KV cache")
        steps = counter("engine_steps", "Engine steps (model forward passes)")
        clientDisconnects = counter("http_client_disconnects", "Responses whose client disconnected before the end")
        // Seconds; a tiny CPU model answers in milliseconds, a 7B one in seconds.
        let latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
        timeToFirstToken = registry.makeValueHistogram(
            descriptor: name("time_to_first_token", "seconds", "Time from a request's arrival to its first generated token"), buckets: latencyBuckets)
        interTokenLatency = registry.makeValueHistogram(
            descriptor: name("inter_token_latency", "seconds", "Time between consecutive tokens of a sample"), buckets: latencyBuckets)
    }

    /// Copies the engine snapshot into the registry and renders the Prometheus text format.
    func render(_ m: EngineMetrics) -> String {
        running.set(Double(m.runningRequests))
        waiting.set(Double(m.waitingRequests))
        kvUsed.set(Double(m.kvBlocksUsed))
        kvTotal.set(Double(m.kvBlocksTotal))
        kvCached.set(Double(m.kvBlocksCached))
        kvBlockBytes.set(Double(m.kvBlockBytes))
        let totals = [m.promptTokens, m.cachedPromptTokens, m.generatedTokens, m.finishedRequests, m.abortedRequests,
                      m.failedRequests, m.preemptions, m.steps]
        let counters = [promptTokens, cachedPromptTokens, generatedTokens, finished, aborted, failed, preemptions, steps]
        counted.withLock { before in
            if before.isEmpty { before = Array(repeating: 0, count: totals.count) }
            for i in totals.indices where totals[i] > before[i] {
                counters[i].increment(by: Int64(totals[i] - before[i]))
                before[i] = totals[i]
            }
        }
        return registry.emitToString()
    }
}

/// Per-response latency bookkeeping: first-token and inter-token times of each sample, from the
/// moment the response's requests were submitted.
struct LatencyClock {
    let metrics: ServerMetrics
    let start = ContinuousClock.now
    var firstSeen = false
    /// Last delta time per (prompt, sample).
    var last: [Int: ContinuousClock.Instant] = [:]

    init(metrics: ServerMetrics) { self.metrics = metrics }

    mutating func record(choice: Int, tokenCount: Int) {
        guard tokenCount > 0 else { return }
        let now = ContinuousClock.now
        if !firstSeen {
            firstSeen = true
            metrics.timeToFirstToken.record(seconds(now - start))
        }
        if let previous = last[choice] {
            // A delta may carry several tokens (the engine batches them); each gets its share.
            let share = seconds(now - previous) / Double(tokenCount)
            for _ in 0..<tokenCount { metrics.interTokenLatency.record(share) }
        }
        last[choice] = now
    }

    func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
