import Foundation
import Testing
import BanyanTestSupport

/// `Tests/Fixtures/stories260k_reference.json`: transformers' greedy tokens and per-token
/// log-probabilities of `builtin:stories260k` (float32).
struct StoriesReference {
    var greedyPrompt: [Int]
    var greedyTokens: [Int]
    var inputIDs: [Int]
    /// `targetLogprobs[i]` = log p(inputIDs[i + 1] | inputIDs[...i]).
    var targetLogprobs: [Double]

    static func load() throws -> StoriesReference {
        let url = FixturePaths.fixtures.appendingPathComponent("stories260k_reference.json")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let greedy = try #require(json["greedy"] as? [String: Any])
        return StoriesReference(greedyPrompt: try #require(greedy["prompt"] as? [Int]),
                                greedyTokens: try #require(greedy["tokens"] as? [Int]),
                                inputIDs: try #require(json["input_ids"] as? [Int]),
                                targetLogprobs: try #require(json["target_logprobs"] as? [Double]))
    }
}

func idList(_ ids: [Int]) -> String { ids.map(String.init).joined(separator: ",") }

/// The documented output of `generate`, `score` and `info` on `builtin:stories260k`.
@Suite struct CLIContractTests {
    let reference: StoriesReference
    init() throws { reference = try StoriesReference.load() }

    var greedyArguments: [String] {
        ["--model", "builtin:stories260k", "--prompt-tokens", idList(reference.greedyPrompt), "--max-tokens", "8", "--temperature", "0"]
    }

    @Test func generateJSONGreedy() throws {
        #expect(reference.greedyPrompt == [1, 330, 361, 140, 473])
        let out = try BanyanBinary.json("generate", greedyArguments)
        let completions = try #require(out["completions"] as? [[String: Any]])
        try #require(completions.count == 1)
        let c = completions[0]
        #expect(c["index"] as? Int == 0)
        #expect(c["tokens"] as? [Int] == Array(reference.greedyTokens.prefix(8)))
        #expect(c["text"] is NSNull, "no tokenizer, so text is null: \(String(describing: c["text"]))")
        // 8 tokens were asked for; the reference's first 8 contain no EOS (2).
        #expect(c["finish_reason"] as? String == "length")
        let usage = try #require(out["usage"] as? [String: Any])
        #expect(usage["prompt_tokens"] as? Int == 5)
        #expect(usage["completion_tokens"] as? Int == 8)
        let timing = try #require(out["timing"] as? [String: Any])
        for key in ["prefill_s", "decode_s", "decode_tokens_per_s"] {
            let value = try #require(timing[key] as? Double, "timing.\(key)")
            #expect(value >= 0 && value.isFinite, "timing.\(key) = \(value)")
        }
    }

    /// `finish_reason` values are the documented ones, and an EOS ends a completion as "eos" without being included.
    @Test func generateJSONFinishReasons() throws {
        // Greedy token 3 is 290; stopping on it ends the completion after two tokens.
        let stop = try BanyanBinary.json("generate", greedyArguments + ["--stop-token-ids", "290"])
        let c = try #require((stop["completions"] as? [[String: Any]])?.first)
        #expect(c["tokens"] as? [Int] == Array(reference.greedyTokens.prefix(2)))
        #expect(c["finish_reason"] as? String == "stop")
        let usage = try #require(stop["usage"] as? [String: Any])
        #expect(usage["completion_tokens"] as? Int == 2)
    }

    @Test func generateJSONSeveralGreedySamples() throws {
        let out = try BanyanBinary.json("generate", greedyArguments + ["--n", "3"])
        let completions = try #require(out["completions"] as? [[String: Any]])
        #expect(completions.map { $0["index"] as? Int } == [0, 1, 2])
        for c in completions {
            #expect(c["tokens"] as? [Int] == Array(reference.greedyTokens.prefix(8)))
            #expect(c["finish_reason"] as? String == "length")
        }
        let usage = try #require(out["usage"] as? [String: Any])
        #expect(usage["prompt_tokens"] as? Int == 5)
        #expect(usage["completion_tokens"] as? Int == 24)
    }

    @Test func generateText() throws {
        let r = try BanyanBinary.run("generate", greedyArguments)
        #expect(r.status == 0 && !r.crashed, "\(r)")
        #expect(r.stdout == reference.greedyTokens.prefix(8).map(String.init).joined(separator: " ") + "\n")
        #expect(r.stderr.hasPrefix("5 prompt + 8 generated tokens; prefill ") && r.stderr.hasSuffix(" tokens/s); finish: length\n"),
                "\(r)")
    }

    @Test func generateTextSeveralSamples() throws {
        let r = try BanyanBinary.run("generate", greedyArguments + ["--n", "3"])
        #expect(r.status == 0 && !r.crashed, "\(r)")
        let line = reference.greedyTokens.prefix(8).map(String.init).joined(separator: " ")
        #expect(r.stdout == "[0] \(line)\n[1] \(line)\n[2] \(line)\n")
        #expect(r.stderr.hasPrefix("5 prompt + 24 generated tokens; "), "\(r)")
    }

    /// Each continuation's log-probabilities equal transformers'; entries keep the continuations' order.
    /// Tolerance 1e-4: float32 forward passes over 40 tokens, summation order differs from PyTorch.
    @Test func scoreJSONMatchesReference() throws {
        let ids = reference.inputIDs, target = reference.targetLogprobs
        let lengths = [ids.count - 1, 5, 1, 20]
        var args = ["--model", "builtin:stories260k", "--prompt-tokens", idList([ids[0]])]
        for n in lengths { args += ["--continuation-tokens", idList(Array(ids[1...n]))] }
        let out = try BanyanBinary.json("score", args)
        let scores = try #require(out["scores"] as? [[String: Any]])
        try #require(scores.count == lengths.count)
        for (entry, n) in zip(scores, lengths) {
            #expect(entry["tokens"] as? [Int] == Array(ids[1...n]))
            let logprobs = try #require(entry["logprobs"] as? [Double])
            try #require(logprobs.count == n)
            for (i, (got, want)) in zip(logprobs, target).enumerated() {
                #expect(abs(got - want) <= 1e-4, "continuation of \(n), token \(i): \(got) vs \(want)")
            }
            let total = try #require(entry["total_logprob"] as? Double)
            #expect(abs(total - target.prefix(n).reduce(0, +)) <= 1e-4 * Double(n), "total of \(n)")
        }
    }

    @Test func scoreText() throws {
        let r = try BanyanBinary.run("score", ["--prompt-tokens", "1", "--continuation-tokens", "461,461", "--continuation-tokens", "461"])
        #expect(r.status == 0 && !r.crashed, "\(r)")
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.count == 3 && lines[2] == "", "\(r)")
        #expect(lines[0].hasPrefix("[0] total -") && lines[0].contains("  (2 tokens; per token: -"), "\(r)")
        #expect(lines[1].hasPrefix("[1] total -") && lines[1].contains("  (1 tokens; per token: -"), "\(r)")
        // The first continuation token is scored at the same position in both.
        let perToken = lines.map { $0.components(separatedBy: "per token: ").last ?? "" }
        #expect(perToken[0].hasPrefix(perToken[1].dropLast() + " "), "\(r)")  // drop the closing ")"
    }

    /// stories260k: 5 layers, hidden 64, 8 heads of 8 over 4 KV heads, FFN 172, vocabulary 512, tied.
    static let storiesInfo: [(key: String, value: String)] = [
        ("model", "builtin:stories260k"), ("architecture", "LlamaForCausalLM"), ("dtype", "f32"),
        ("hidden_size", "64"), ("layers", "5"), ("heads", "8"), ("kv_heads", "4"), ("head_dim", "8"), ("intermediate_size", "172"),
        ("vocab_size", "512"), ("context", "512"),
        // 5 × (4·64·64 − 2·64·32 attention + 3·64·172 MLP + 2·64 norms) + 512·64 tied embedding + 64 final norm.
        ("parameters", "\(260_032)"), ("weight_bytes", "\(260_032 * 4)"),
        ("kv_dtype", "f32"),  // f32 weights: --precision exact is the default and keeps K/V float32
        ("kv_bytes_per_token", "\(5 * 2 * 4 * 8 * 4)"),  // layers × (K, V) × kvHeads × headDim × float32
    ]

    @Test func infoJSON() throws {
        let out = try BanyanBinary.json("info", [])
        for (key, value) in Self.storiesInfo {
            if let n = Int(value) { #expect(out[key] as? Int == n, "\(key)") } else { #expect(out[key] as? String == value, "\(key)") }
        }
        #expect(out["threads"] as? Int == 1)
        #expect(out["precision"] as? String == "exact")
        let kernels = try #require(out["kernels"] as? String)
        #expect(kernels.hasPrefix("matmul: "), "\(kernels)")
    }

    /// The KV dtype follows --kv-dtype, or defaults to f16 under --precision fast (bf16 under bf16);
    /// bytes per token follow it.
    @Test func infoKVDType() throws {
        let halfBytes = 5 * 2 * 4 * 8 * 2  // 16-bit K and V
        for (args, dtype, bytes) in [(["--kv-dtype", "bf16"], "bf16", halfBytes), (["--kv-dtype", "f16"], "f16", halfBytes),
                                     (["--precision", "fast"], "f16", halfBytes), (["--precision", "bf16"], "bf16", halfBytes),
                                     (["--precision", "fast", "--kv-dtype", "f32"], "f32", 2 * halfBytes)] {
            let out = try BanyanBinary.json("info", args)
            #expect(out["kv_dtype"] as? String == dtype, "\(args)")
            #expect(out["kv_bytes_per_token"] as? Int == bytes, "\(args)")
        }
        // 16-bit weights default to --precision fast and f16 K/V (as llama.cpp runs them).
        let bf16Model = try BanyanBinary.json("info", ["--model", "synthetic:tiny"])
        #expect(bf16Model["dtype"] as? String == "bf16")
        #expect(bf16Model["precision"] as? String == "fast")
        #expect(bf16Model["kv_dtype"] as? String == "f16")
        let f32Model = try BanyanBinary.json("info", ["--model", "synthetic:tiny:f32"])
        #expect(f32Model["precision"] as? String == "exact")
        #expect(f32Model["kv_dtype"] as? String == "f32")
    }

    /// Quantized weights: `synthetic:NAME:TYPE` and `--quantize` give every matrix that type (a row
    /// that is not a whole number of blocks falls back as llama.cpp does, or stays float), `fast`
    /// precision with integer products and f16 K/V by default; `exact` widens them instead.
    @Test func infoQuantized() throws {
        let q8 = try BanyanBinary.json("info", ["--model", "synthetic:tiny:q8_0"])
        #expect(q8["quantization"] as? String == "Q8_0" && q8["dtype"] as? String == "Q8_0")
        #expect(q8["precision"] as? String == "fast")
        #expect(q8["kv_dtype"] as? String == "f16")
        #expect(q8["integer_products"] as? Bool == true)
        #expect(q8["tensor_types"] as? [String: Int] == ["Q8_0": 16])   // embedding, 2 × 7 layer matrices, LM head
        // tiny: embedding and LM head 512×128; per layer q 128×128, k and v 64×128, o 128×128, gate and
        // up 256×128, down 128×256. Q8_0 stores 34 bytes per 32 weights; norms stay float32.
        let weights = 2 * 512 * 128 + 2 * (2 * 128 * 128 + 2 * 64 * 128 + 3 * 256 * 128)
        #expect(q8["weight_bytes"] as? Int == weights / 32 * 34 + (2 * 2 + 1) * 128 * 4)
        let exact = try BanyanBinary.json("info", ["--model", "synthetic:tiny:q4_k", "--precision", "exact"])
        #expect(exact["integer_products"] as? Bool == false)
        #expect(exact["kv_dtype"] as? String == "f32")
        // stories260k: hidden 64 is not a whole Q4_K block (→ Q5_0), FFN 172 not even a Q5_0 block (stays F32).
        let stories = try BanyanBinary.json("info", ["--quantize", "q4_k"])
        #expect(stories["tensor_types"] as? [String: Int] == ["F32": 5, "Q5_0": 31])
        #expect(try BanyanBinary.run("info", ["--quantize", "q3_k"]).status != 0)
    }

    /// generate reports the KV dtype at the top level and its KV bytes follow it: the same greedy run
    /// holds half the bytes with bf16 KV (same blocks, 16-bit elements).
    @Test func generateJSONKVDType() throws {
        let f32 = try BanyanBinary.json("generate", greedyArguments)
        let bf16 = try BanyanBinary.json("generate", greedyArguments + ["--kv-dtype", "bf16"])
        #expect(f32["kv_dtype"] as? String == "f32")
        #expect(bf16["kv_dtype"] as? String == "bf16")
        let a = try #require((f32["usage"] as? [String: Any])?["kv_bytes"] as? Int)
        let b = try #require((bf16["usage"] as? [String: Any])?["kv_bytes"] as? Int)
        #expect(a > 0 && b * 2 == a, "kv_bytes f32 \(a), bf16 \(b)")
    }

    /// The text form lists the JSON fields in order, one `key: value` line each.
    @Test func infoText() throws {
        let kernels = try #require(try BanyanBinary.json("info", [])["kernels"] as? String)
        let r = try BanyanBinary.run("info", [])
        #expect(r.status == 0 && !r.crashed, "\(r)")
        let expected = Self.storiesInfo.map { "\($0.key): \($0.value)\n" }.joined() + "kernels: \(kernels)\nthreads: 1\nprecision: exact\nbf16_products: false\n"
            + "quantization: null\ntensor_types: {\"F32\":36}\ninteger_products: false\n"
        #expect(r.stdout == expected)
        #expect(r.stderr == "")
    }

    /// A fixture folder loads through the CLI too (sharded, bf16, biased, tied).
    @Test(arguments: ["llama-f32-sharded", "qwen2-bf16", "llama-bf16-mha-tied", "llama-f16-headdim"])
    func infoFixture(_ fixture: String) throws {
        let folder = FixturePaths.models.appendingPathComponent(fixture)
        let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("config.json"))) as? [String: Any])
        let out = try BanyanBinary.json("info", ["--model", folder.path])
        #expect(out["architecture"] as? String == (config["architectures"] as? [String])?.first)
        #expect(out["hidden_size"] as? Int == config["hidden_size"] as? Int)
        #expect(out["vocab_size"] as? Int == config["vocab_size"] as? Int)
        #expect(out["head_dim"] as? Int == config["head_dim"] as? Int)
        let dtype = (config["torch_dtype"] ?? config["dtype"]) as? String
        #expect(out["dtype"] as? String == ["float32": "f32", "float16": "f16", "bfloat16": "bf16"][dtype ?? ""])
    }
}
