import Foundation
import Testing
import BanyanKernels
import BanyanModel

@Suite("Synthetic models")
struct SyntheticTests {
    @Test("weights are N(0, 0.02), norms 1, and the same for any thread count")
    func weights() throws {
        let a = try Model.load("synthetic:tiny", threads: ThreadPool(threadCount: 1))
        let b = try Model.load("synthetic:tiny", threads: ThreadPool(threadCount: 3))
        let w = a.weights.layers[0].wGate
        var sum = 0.0, sumSq = 0.0
        for r in 0..<w.rows { for c in 0..<w.cols { let v = Double(w.element(r, c)); sum += v; sumSq += v * v } }
        let n = Double(w.rows * w.cols)
        let std = (sumSq / n - (sum / n) * (sum / n)).squareRoot()
        // 32768 samples: the sample std is within ~1% of 0.02 with overwhelming probability.
        #expect(abs(std - 0.02) < 0.0005, "std \(std)")
        #expect(abs(sum / n) < 0.0005)
        #expect(a.weights.layers[0].attentionNorm.allSatisfy { $0 == 1 })
        let wb = b.weights.layers[0].wGate
        for r in 0..<w.rows { for c in 0..<w.cols { #expect(w.element(r, c) == wb.element(r, c)) } }
        #expect(a.config.parameterCount == b.config.parameterCount)
    }

    @Test("published shapes: parameter counts of the real models")
    func shapes() throws {
        // TinyLlama-1.1B has 1,100,048,384 parameters; Llama-2-7B 6,738,415,616; SmolLM2-135M 134,515,008.
        #expect(SyntheticModels.shapes["tinyllama-1.1b"]!.parameterCount == 1_100_048_384)
        #expect(SyntheticModels.shapes["llama2-7b"]!.parameterCount == 6_738_415_616)
        #expect(SyntheticModels.shapes["smollm2-135m"]!.parameterCount == 134_515_008)
    }
}
