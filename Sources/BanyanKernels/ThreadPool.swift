import CBanyanKernels

/// A persistent pool of worker threads shared by every parallel loop: `threadCount - 1` workers
/// created once, plus the calling thread. Idle workers spin ~0.2 ms, then sleep.
public final class ThreadPool: @unchecked Sendable {
    public let threadCount: Int
    // Owned C pool; immutable after init, and the C side synchronizes every call.
    private let handle: OpaquePointer

    public init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
        handle = banyan_pool_create(Int32(self.threadCount))
    }

    deinit { banyan_pool_destroy(handle) }

    /// Runs `body(i)` for every `i` in `0..<count`, spread over the pool's threads (the caller
    /// participates); returns when all are done. `body` must be safe to call concurrently for
    /// distinct `i`. Calls made from inside a body, or while another thread's call is in
    /// flight, run serially on the calling thread.
    public func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        if count <= 0 { return }
        if count == 1 || threadCount == 1 {
            for i in 0..<count { body(i) }
            return
        }
        // `body` only has to outlive this call, and banyan_pool_run returns after every index
        // has run, so handing the C side a pointer to the (non-escaping) closure is sound.
        withoutActuallyEscaping(body) { escapable in
            var closure = escapable
            withUnsafeMutablePointer(to: &closure) { pointer in
                banyan_pool_run(handle, count, { context, index in
                    context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(index)
                }, UnsafeMutableRawPointer(pointer))
            }
        }
    }
}
