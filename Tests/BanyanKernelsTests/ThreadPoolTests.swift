import Testing
import BanyanKernels

@Suite struct ThreadPoolTests {
    @Test(arguments: [1, 2, 3, 4])
    func everyIndexOnce(threads: Int) {
        let pool = ThreadPool(threadCount: threads)
        for count in [0, 1, 2, 3, 7, 64, 1000] {
            for _ in 0..<50 {
                let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(count, 1))
                defer { hits.deallocate() }
                hits.initialize(repeating: 0, count: max(count, 1))
                // Distinct indices touch distinct slots, so plain increments are race-free.
                pool.parallelFor(count) { i in hits[i] += 1 }
                #expect((0..<count).allSatisfy { hits[$0] == 1 }, "count \(count), threads \(threads)")
            }
        }
    }

    @Test func manyCalls() {
        let pool = ThreadPool(threadCount: 2)
        let sums = UnsafeMutablePointer<Int>.allocate(capacity: 8)
        defer { sums.deallocate() }
        var failures = 0
        for call in 0..<5_000 {
            sums.initialize(repeating: 0, count: 8)
            pool.parallelFor(8) { i in sums[i] = i + call }
            if !(0..<8).allSatisfy({ sums[$0] == $0 + call }) { failures += 1 }
            if call % 1000 == 0 {
                // Let the workers fall asleep, then wake them again.
                usleepMillis(2)
            }
        }
        #expect(failures == 0)
    }

    @Test func nestedCallsRunSerially() {
        let pool = ThreadPool(threadCount: 3)
        let hits = UnsafeMutablePointer<Int>.allocate(capacity: 16 * 16)
        defer { hits.deallocate() }
        hits.initialize(repeating: 0, count: 256)
        pool.parallelFor(16) { i in
            pool.parallelFor(16) { j in hits[i * 16 + j] += 1 }
        }
        #expect((0..<256).allSatisfy { hits[$0] == 1 })
    }
}

private func usleepMillis(_ ms: Int) {
    let until = ContinuousClock.now + .milliseconds(ms)
    while ContinuousClock.now < until {}
}
