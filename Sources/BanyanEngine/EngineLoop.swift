import Foundation
import ServiceLifecycle

/// The engine for concurrent clients: one `Scheduler` stepped on a dedicated thread (not Swift's
/// cooperative pool, which the model step would block), fed by `submit` from any task. A
/// swift-service-lifecycle `Service`: graceful shutdown stops admission and drains what was accepted.
public final class EngineLoop: Service, @unchecked Sendable {
    public let engine: Engine
    public let policy: SchedulingPolicy
    /// Most requests waiting to start; `submit` beyond it fails with `EngineError.overloaded`.
    public let maxWaiting: Int

    private enum Command {
        case add(Request, AsyncThrowingStream<RequestEvent, any Error>.Continuation, RequestID)
        case abort(RequestID)
    }

    private let condition = NSCondition()
    // Guarded by `condition`:
    private var inbox: [Command] = []
    private var waitingCount = 0
    private var snapshot = EngineMetrics()
    private var started = false
    private var accepting = true
    private var stopping = false
    private var stopped = false
    private var nextID = 0

    /// Owned by the loop thread once started.
    private let scheduler: Scheduler

    public init(engine: Engine, policy: SchedulingPolicy = .fcfsLRU, maxWaiting: Int = 1024) {
        self.engine = engine
        self.policy = policy
        self.maxWaiting = maxWaiting
        scheduler = Scheduler(engine: engine, policy: policy)
        snapshot = scheduler.metrics
    }

    /// Starts the loop thread (once; `submit` and `run` call it).
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard !started else { return }
        started = true
        let thread = Thread { [self] in loop() }
        thread.name = "banyan-engine"
        thread.stackSize = 8 << 20
        thread.start()
    }

    /// Queues `request` and streams its events. Invalid requests fail the stream at once with an
    /// `EngineError`; a full waiting queue with `.overloaded`. Cancelling the consumer (or dropping
    /// the stream) aborts the request within one step and releases its KV.
    public func submit(_ request: Request) -> AsyncThrowingStream<RequestEvent, any Error> {
        let (stream, continuation) = AsyncThrowingStream<RequestEvent, any Error>.makeStream()
        do { try engine.validate(request) } catch {
            continuation.finish(throwing: error)
            return stream
        }
        start()
        condition.lock()
        guard accepting else {
            condition.unlock()
            continuation.finish(throwing: EngineError.unavailable("the server is shutting down"))
            return stream
        }
        guard waitingCount < maxWaiting else {
            condition.unlock()
            continuation.finish(throwing: EngineError.overloaded("\(waitingCount) requests are waiting (the limit is \(maxWaiting)); retry later"))
            return stream
        }
        let id = RequestID(nextID)
        nextID += 1
        waitingCount += 1
        inbox.append(.add(request, continuation, id))
        condition.signal()
        condition.unlock()
        continuation.onTermination = { [weak self] termination in
            if case .cancelled = termination { self?.abort(id) }
        }
        return stream
    }

    private func abort(_ id: RequestID) {
        condition.lock()
        inbox.append(.abort(id))
        condition.signal()
        condition.unlock()
    }

    /// Scheduler counters as of the last step.
    public var metrics: EngineMetrics {
        condition.lock()
        defer { condition.unlock() }
        return snapshot
    }

    /// Stops admission, lets every accepted request finish, then stops the thread.
    public func shutdown() async {
        guard beginStopping() else { return }
        while !isStopped { try? await Task.sleep(for: .milliseconds(5)) }
    }

    /// Stops admission and wakes the loop; false when it never started.
    private func beginStopping() -> Bool {
        condition.lock()
        defer { condition.unlock() }
        accepting = false
        stopping = true
        condition.signal()
        return started
    }

    private var isStopped: Bool {
        condition.lock()
        defer { condition.unlock() }
        return stopped
    }

    /// Service: runs until graceful shutdown (or cancellation), then drains.
    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await shutdown()
    }

    private func loop() {
        while true {
            condition.lock()
            while inbox.isEmpty && !scheduler.hasWork && !stopping { condition.wait() }
            let commands = inbox
            inbox = []
            if stopping && commands.isEmpty && !scheduler.hasWork {
                stopped = true
                condition.unlock()
                return
            }
            condition.unlock()
            for command in commands {
                switch command {
                case let .add(request, continuation, id):
                    scheduler.add(request, id: id) { result in
                        switch result {
                        case .success(let event):
                            continuation.yield(event)
                            if case .finished = event { continuation.finish() }
                        case .failure(let error):
                            continuation.finish(throwing: error)
                        }
                    }
                case .abort(let id):
                    scheduler.abort(id)
                }
            }
            if scheduler.hasWork { scheduler.step() }
            let m = scheduler.metrics
            condition.lock()
            snapshot = m
            waitingCount = inbox.reduce(0) { if case .add = $1 { $0 + 1 } else { $0 } } + m.waitingRequests
            condition.unlock()
        }
    }
}
