import Foundation
import Testing
import BanyanEngine
import BanyanTestSupport

@Suite("Sampler")
struct SamplerTests {
    /// Empirical frequencies of a plain-temperature draw against softmax(logits / t), for vocabularies
    /// that do and do not fill whole 16-lane chunks. 40,000 draws: a frequency's standard error is
    /// at most 0.0025, so 5 sigma (0.0125) bounds the difference without flaking.
    @Test("a plain temperature draws each token with its softmax probability", arguments: [5, 16, 37, 100])
    func frequencies(vocab: Int) {
        var rng = SeededRNG(seed: UInt64(vocab))
        let logits = (0..<vocab).map { _ in Float.random(in: -3...3, using: &rng) }
        let t: Float = 0.8
        let m = logits.max()!
        let weights = logits.map { exp(Double($0 - m) / Double(t)) }
        let total = weights.reduce(0, +)
        var counts = [Int](repeating: 0, count: vocab)
        var stream = SequenceRNG(seed: 7, index: 0)
        let draws = 40_000
        logits.withUnsafeBufferPointer { l in
            for _ in 0..<draws {
                counts[Sampler.sample(logits: l.baseAddress!, count: vocab, parameters: SamplingParameters(temperature: t), rng: &stream)] += 1
            }
        }
        for i in 0..<vocab {
            #expect(abs(Double(counts[i]) / Double(draws) - weights[i] / total) < 0.0125, "token \(i)")
        }
    }

    @Test("log-sum-exp equals the Double reference within float32 rounding")
    func logSumExp() {
        var rng = SeededRNG(seed: 3)
        for count in [1, 15, 16, 17, 1000, 49_152] {
            let x = (0..<count).map { _ in Float.random(in: -30...30, using: &rng) }
            let m = Double(x.max()!)
            let reference = m + log(x.reduce(0.0) { $0 + exp(Double($1) - m) })
            let got = x.withUnsafeBufferPointer { Sampler.logSumExp($0.baseAddress!, count: count) }
            // simdExp is within ~2 ulp (2.4e-7 relative) per term; the sum and its log inherit that.
            #expect(abs(got - reference) < 1e-6 * max(1, abs(reference)), "count \(count)")
        }
    }
}
