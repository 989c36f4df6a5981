import Foundation

/// Identity of a request inside one scheduler.
public struct RequestID: Hashable, Sendable, Comparable {
    public let raw: Int
    public init(_ raw: Int) { self.raw = raw }
    public static func < (a: RequestID, b: RequestID) -> Bool { a.raw < b.raw }
}

/// TEMPORARY shim so the API compiles: runs everything pending as one batch per step.
final class Scheduler {
    let engine: Engine
    let policy: SchedulingPolicy
    var pending: [(Request, RequestID, (Result<RequestEvent, any Error>) -> Void)] = []
    var metrics = EngineMetrics()

    init(engine: Engine, policy: SchedulingPolicy) { self.engine = engine; self.policy = policy }

    var hasWork: Bool { !pending.isEmpty }

    func add(_ request: Request, id: RequestID, sink: @escaping (Result<RequestEvent, any Error>) -> Void) {
        pending.append((request, id, sink))
    }

    func abort(_ id: RequestID) { pending.removeAll { $0.1 == id } }

    func step() {
        let batch = pending
        pending = []
        engine.runBatch(batch.map(\.0), policy: policy) { i, result in
            let sink = batch[i].2
            switch result {
            case .failure(let e): sink(.failure(e))
            case .success(let o):
                if let lp = o.promptLogprobs { sink(.success(.promptLogprobs(from: 1, logprobs: lp))) }
                for c in o.completions {
                    sink(.success(.delta(SampleDelta(index: c.index, tokens: c.tokens, logprobs: c.logprobs,
                                                     topLogprobs: c.topLogprobs, text: c.text ?? ""))))
                    sink(.success(.sampleFinished(index: c.index, reason: c.finishReason)))
                }
                sink(.success(.finished(RequestUsage(promptTokens: o.promptTokens, completionTokens: o.completionTokens,
                                                     cachedPromptTokens: 0))))
            }
        }
    }
}
