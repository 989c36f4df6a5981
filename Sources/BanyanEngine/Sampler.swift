import Foundation
import BanyanKernels

/// How the next token is drawn from logits. `temperature == 0` is greedy (lowest id wins ties).
public struct SamplingParameters: Sendable, Equatable {
    public var temperature: Float = 1
    public var topK: Int = 0          // 0: off
    public var topP: Float = 1        // 1: off
    public var minP: Float = 0        // 0: off
    public var seed: UInt64 = 0
    public init(temperature: Float = 1, topK: Int = 0, topP: Float = 1, minP: Float = 0, seed: UInt64 = 0) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.minP = minP; self.seed = seed
    }
}

/// A sequence's own random stream, seeded from (seed, sequence index) alone so its tokens never
/// depend on what else is in the batch (xoshiro256** seeded through SplitMix64).
public struct SequenceRNG: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)
    public init(seed: UInt64, index: Int) {
        var seeder = SplitMix64(seed: seed ^ (UInt64(truncatingIfNeeded: index) &* 0xD1B5_4A32_D192_ED03))
        s = (seeder.next(), seeder.next(), seeder.next(), seeder.next())
    }
    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3; s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }
    /// Uniform in [0, 1) with 53 bits.
    public mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

/// Draws tokens: temperature, then top-k, top-p and min-p filters (the order transformers applies them).
public enum Sampler {
    public static func sample(logits: UnsafePointer<Float>, count: Int, parameters p: SamplingParameters,
                              rng: inout SequenceRNG) -> Int {
        if p.temperature == 0 { return argmax(logits, count: count) }
        if p.topK == 0 && p.topP >= 1 && p.minP <= 0 { return sampleFull(logits: logits, count: count, temperature: p.temperature, rng: &rng) }
        // Candidates sorted by logit (ties by id) so the draw is reproducible.
        var ids = Array(0..<count)
        if p.topK > 0 && p.topK < count {
            ids.sort { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }
            ids.removeLast(count - p.topK)
        } else if p.topP < 1 || p.minP > 0 {
            ids.sort { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }
        }
        let t = Double(p.temperature)
        let top = ids.map { Double(logits[$0]) }.max() ?? 0
        var probs = ids.map { Foundation.exp((Double(logits[$0]) - top) / t) }
        var total = probs.reduce(0, +)
        if p.topP < 1 {
            var cumulative = 0.0
            var keep = probs.count
            for (i, q) in probs.enumerated() {
                cumulative += q / total
                if cumulative >= Double(p.topP) { keep = i + 1; break }
            }
            probs.removeLast(probs.count - keep); ids.removeLast(ids.count - keep)
            total = probs.reduce(0, +)
        }
        if p.minP > 0, let best = probs.max() {
            let threshold = Double(p.minP) * best
            var keptIDs: [Int] = [], kept: [Double] = []
            for (i, q) in probs.enumerated() where q >= threshold { keptIDs.append(ids[i]); kept.append(q) }
            ids = keptIDs; probs = kept
            total = probs.reduce(0, +)
        }
        var u = rng.unit() * total
        for (i, q) in probs.enumerated() {
            u -= q
            if u < 0 { return ids[i] }
        }
        return ids[probs.count - 1]
    }

    /// A draw over the whole vocabulary (no filters), the common case of a plain `temperature`:
    /// weights `exp((logit - max) / t)` by vector exp, summed in Double 16 lanes at a time, then a
    /// walk in id order. It runs once per generated token over the vocabulary, so it avoids sorting
    /// and per-entry Double exp.
    static func sampleFull(logits: UnsafePointer<Float>, count: Int, temperature: Float, rng: inout SequenceRNG) -> Int {
        var top = -Float.infinity
        for i in 0..<count { top = max(top, logits[i]) }
        let scale = SIMD16<Float>(repeating: 1 / temperature), topv = SIMD16<Float>(repeating: top)
        let chunks = count / 16
        var partial = [Double](repeating: 0, count: chunks + 1)
        var total = 0.0
        for c in 0..<chunks {
            partial[c] = Double(simdExp((SIMD16<Float>(UnsafeBufferPointer(start: logits + c * 16, count: 16)) - topv) * scale).sum())
            total += partial[c]
        }
        func weight(_ i: Int) -> Double { Double(simdExp(SIMD16<Float>(repeating: (logits[i] - top) / temperature))[0]) }
        for i in (chunks * 16)..<count { partial[chunks] += weight(i) }
        total += partial[chunks]
        // Find the 16-wide chunk holding the draw, then the id inside it.
        var u = rng.unit() * total
        for c in 0...chunks {
            if c < chunks && u >= partial[c] { u -= partial[c]; continue }
            let end = c == chunks ? count : (c + 1) * 16
            let lanes = c < chunks ? simdExp((SIMD16<Float>(UnsafeBufferPointer(start: logits + c * 16, count: 16)) - topv) * scale) : SIMD16()
            for i in (c * 16)..<end {
                u -= c < chunks ? Double(lanes[i - c * 16]) : weight(i)
                if u < 0 { return i }
            }
            // Rounding left a sliver past the chunk's last id.
            return max(c * 16, end - 1)
        }
        return count - 1
    }

    public static func argmax(_ x: UnsafePointer<Float>, count: Int) -> Int {
        var best = 0
        for i in 1..<max(count, 1) where x[i] > x[best] { best = i }
        return best
    }

    /// The `k` most likely tokens with their log-probabilities, best first (ties by id).
    public static func topLogprobs(logits: UnsafePointer<Float>, count: Int, k: Int) -> [TokenLogprob] {
        let lse = logSumExp(logits, count: count)
        var best: [Int] = []
        for i in 0..<count {
            if best.count < k || logits[i] > logits[best.last!] {
                let at = best.firstIndex { logits[$0] < logits[i] } ?? best.count
                best.insert(i, at: at)
                if best.count > k { best.removeLast() }
            }
        }
        return best.map { TokenLogprob(token: $0, logprob: Double(logits[$0]) - lse) }
    }

    /// Natural-log probability of `token` under `logits`.
    public static func logProbability(of token: Int, logits: UnsafePointer<Float>, count: Int) -> Double {
        Double(logits[token]) - logSumExp(logits, count: count)
    }

    /// `log Σ exp(x[i])`: the max, then a vector float32 exp of `x - max` (≈2 ulp, `simdExp`) summed
    /// in Double 16 lanes at a time. Every row in a fixed order, so it is the same whatever the batch;
    /// it runs once per generated token over the whole vocabulary, so it must be cheap.
    public static func logSumExp(_ x: UnsafePointer<Float>, count: Int) -> Double {
        var m = -Float.infinity
        for i in 0..<count { m = max(m, x[i]) }
        let mv = SIMD16<Float>(repeating: m)
        var s = 0.0
        var i = 0
        while i + 16 <= count {
            s += Double(simdExp(SIMD16<Float>(UnsafeBufferPointer(start: x + i, count: 16)) - mv).sum())
            i += 16
        }
        while i < count { s += Foundation.exp(Double(x[i] - m)); i += 1 }
        return Double(m) + Foundation.log(s)
    }
}
