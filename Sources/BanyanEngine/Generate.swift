import Foundation
import BanyanKernels
import BanyanKV
import BanyanModel
import BanyanTokenizer

extension Engine {
    /// Generates `request.n` samples of each `prompt + suffix` (one empty suffix when none). The
    /// prompt is prefilled once and every suffix once (the prefix cache shares them); samples fork
    /// from them. Completion `i` is suffix `i / n`, sample `i % n`, and draws from its own RNG
    /// (seed, i), so it is the same whatever the batch.
    public func generate(_ request: Request, suffixes: [[Int]] = []) throws -> GenerateResult {
        let r = request
        let all = suffixes.isEmpty ? [[Int]()] : suffixes
        guard !r.prompt.isEmpty else { throw EngineError.invalidRequest("the prompt is empty") }
        for (i, s) in all.enumerated() { try validate(tokens: s, what: "suffix \(i)") }
        let requests: [Request] = all.enumerated().map { i, suffix in
            var b = r
            b.prompt = r.prompt + suffix
            b.rngIndexOffset = r.rngIndexOffset + i * r.n
            return b
        }
        var outputs = [BatchOutput?](repeating: nil, count: requests.count)
        var firstError: (any Error)? = nil
        let stats = runBatch(requests, policy: .prefixTree) { i, result in
            switch result {
            case .success(let o): outputs[i] = o
            case .failure(let e): if firstError == nil { firstError = e }
            }
        }
        if let e = firstError { throw e }
        var completions: [Completion] = []
        for (i, o) in outputs.enumerated() {
            for var c in o!.completions {
                c.suffixIndex = i
                c.sampleIndex = c.index
                c.index = i * r.n + c.sampleIndex
                completions.append(c)
            }
        }
        return GenerateResult(completions: completions, promptTokens: r.prompt.count + all.reduce(0) { $0 + $1.count },
                              completionTokens: completions.reduce(0) { $0 + $1.tokens.count },
                              prefillSeconds: stats.prefillSeconds, decodeSeconds: stats.decodeSeconds,
                              decodeSteps: stats.decodeSteps, kvPeakBytes: stats.kvPeakBytes)
    }
}

func seconds(since start: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
}
