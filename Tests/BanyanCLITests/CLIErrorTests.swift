import Foundation
import Testing
import BanyanTestSupport

/// Bad input through the binary: one `Error: ...` line naming the file or flag and the problem, a
/// non-zero exit status, never a crash.
@Suite struct CLIErrorTests {
    /// A broken checkpoint: `info` prints exactly the library's one-line error and exits 1.
    @Test(arguments: BrokenCheckpoint.all)
    func brokenCheckpointInfo(_ broken: BrokenCheckpoint) throws {
        let folder = try TemporaryFolder()
        let model = try broken.make(in: folder)
        let r = try BanyanBinary.run("info", ["--model", model])
        #expect(r.status == 1 && !r.crashed, "\(r)")
        #expect(r.stdout == "")
        let expected = try broken.expected(model)
        #expect(r.stderr.hasPrefix("Error: ") && r.stderr.hasSuffix("\n"), "\(r)")
        let message = String(r.stderr.dropFirst("Error: ".count).dropLast())
        #expect(expected.matches(message), "expected: \(expected)\nfound:    \(message)")
    }

    /// `generate` and `score` load the model the same way and fail the same way.
    @Test(arguments: ["generate", "score"],
          ["missing model folder", "unknown architecture", "rope_parameters yarn", "model.safetensors cut mid-header",
           "tensor missing", "index naming a missing shard"])
    func brokenCheckpointRun(_ command: String, _ caseName: String) throws {
        let broken = try #require(BrokenCheckpoint.all.first { $0.name == caseName })
        let folder = try TemporaryFolder()
        let model = try broken.make(in: folder)
        var args = ["--model", model, "--prompt-tokens", "1,5"]
        args += command == "generate" ? ["--max-tokens", "1"] : ["--continuation-tokens", "3"]
        let r = try BanyanBinary.run(command, args)
        #expect(r.status == 1 && !r.crashed, "\(r)")
        #expect(r.stdout == "")
        let message = String(r.stderr.dropFirst("Error: ".count).dropLast())
        let expected = try broken.expected(model)
        #expect(r.stderr.hasPrefix("Error: ") && expected.matches(message), "\(r)")
    }

    /// A request the model cannot serve: exactly one error line, exit 1.
    struct RequestCase: Sendable, CustomStringConvertible {
        var description: String
        var arguments: [String]
        var error: String
    }

    static let tooLong = (0..<600).map { _ in "5" }.joined(separator: ",")
    static let prompt500 = (0..<500).map { _ in "5" }.joined(separator: ",")
    static func ids(_ count: Int) -> String { (0..<count).map { String(3 + $0) }.joined(separator: ",") }
    static let slidingModel = FixturePaths.models.appendingPathComponent("mistral-sliding-short").path
    static let slidingRefusal = "Banyan computes full attention only and refuses rather than diverge"

    static let requestCases: [RequestCase] = [
        RequestCase(description: "prompt longer than the context",
                    arguments: ["generate", "--prompt-tokens", tooLong, "--max-tokens", "1"],
                    error: "prompt: 600 tokens exceed the model's context of 512 tokens"),
        RequestCase(description: "prompt + --max-tokens over the context",
                    arguments: ["generate", "--prompt-tokens", prompt500],
                    error: "prompt (500 tokens) + max_tokens (64): 564 tokens exceed the model's context of 512 tokens"),
        RequestCase(description: "--max-tokens alone over the context",
                    arguments: ["generate", "--prompt-tokens", "1,2", "--max-tokens", "600"],
                    error: "prompt (2 tokens) + max_tokens (600): 602 tokens exceed the model's context of 512 tokens"),
        RequestCase(description: "prompt token id past the vocabulary",
                    arguments: ["generate", "--prompt-tokens", "1,999", "--max-tokens", "1"],
                    error: "prompt: token id 999 out of range (vocabulary size 512)"),
        RequestCase(description: "prompt token id equal to the vocabulary size",
                    arguments: ["generate", "--prompt-tokens", "512", "--max-tokens", "1"],
                    error: "prompt: token id 512 out of range (vocabulary size 512)"),
        RequestCase(description: "negative prompt token id",
                    arguments: ["generate", "--prompt-tokens", "1,-1", "--max-tokens", "1"],
                    error: "prompt: token id -1 out of range (vocabulary size 512)"),
        RequestCase(description: "suffix token id past the vocabulary",
                    arguments: ["generate", "--prompt-tokens", "1", "--suffix-tokens", "3", "--suffix-tokens", "4,600", "--max-tokens", "1"],
                    error: "suffix 1: token id 600 out of range (vocabulary size 512)"),
        RequestCase(description: "stop token id past the vocabulary",
                    arguments: ["generate", "--prompt-tokens", "1", "--stop-token-ids", "13,999", "--max-tokens", "1"],
                    error: "stop token: token id 999 out of range (vocabulary size 512)"),
        RequestCase(description: "--stop without a tokenizer",
                    arguments: ["generate", "--prompt-tokens", "1", "--stop", "x", "--max-tokens", "1"],
                    error: "stop strings need a tokenizer, and this model has none (use stop token ids)"),
        RequestCase(description: "continuation token id past the vocabulary",
                    arguments: ["score", "--prompt-tokens", "1", "--continuation-tokens", "3", "--continuation-tokens", "999"],
                    error: "continuation 1: token id 999 out of range (vocabulary size 512)"),
        RequestCase(description: "prompt + continuation over the context",
                    arguments: ["score", "--prompt-tokens", "1", "--continuation-tokens", tooLong],
                    error: "prompt + continuation 0: 601 tokens exceed the model's context of 512 tokens"),
        RequestCase(description: "KV budget below one block",
                    arguments: ["generate", "--prompt-tokens", "1,2", "--max-kv-bytes", "1", "--max-tokens", "1"],
                    error: "KV budget of 1 bytes is smaller than one KV block (40960 bytes)"),
        // One block of stories260k holds 32 tokens (40960 bytes = 32 × 1280); 100 prompt tokens need 4.
        RequestCase(description: "KV budget exhausted by the prompt",
                    arguments: ["generate", "--prompt-tokens", (0..<100).map { _ in "5" }.joined(separator: ","),
                                "--max-kv-bytes", "40960", "--max-tokens", "2"],
                    error: "KV cache memory exhausted: needed 4 more block(s), 1 free within the budget of 40960 bytes (raise --max-kv-bytes or lower --n / --max-tokens)"),
        RequestCase(description: "unknown built-in model",
                    arguments: ["info", "--model", "builtin:nope"],
                    error: "--model builtin:nope: unknown built-in model (builtin:stories260k)"),
        RequestCase(description: "prompt longer than the sliding window",
                    arguments: ["generate", "--model", slidingModel, "--prompt-tokens", ids(17), "--max-tokens", "1"],
                    error: "prompt: 17 tokens exceed the sliding window of 16 tokens (config.json sliding_window); \(slidingRefusal)"),
        RequestCase(description: "prompt + --max-tokens over the sliding window",
                    arguments: ["generate", "--model", slidingModel, "--prompt-tokens", ids(10), "--max-tokens", "8"],
                    error: "prompt (10 tokens) + max_tokens (8): 18 tokens exceed the sliding window of 16 tokens (config.json sliding_window); \(slidingRefusal)"),
        RequestCase(description: "scoring past the sliding window",
                    arguments: ["score", "--model", slidingModel, "--prompt-tokens", ids(10), "--continuation-tokens", ids(7)],
                    error: "prompt + continuation 0: 17 tokens exceed the sliding window of 16 tokens (config.json sliding_window); \(slidingRefusal)"),
    ]

    @Test(arguments: requestCases)
    func badRequest(_ c: RequestCase) throws {
        let r = try BanyanBinary.run(c.arguments[0], Array(c.arguments.dropFirst()))
        #expect(r.status == 1 && !r.crashed, "\(r)")
        #expect(r.stdout == "")
        #expect(r.stderr == "Error: \(c.error)\n")
    }

    /// Requests within the limits that the cases above refuse just past them.
    @Test func limitsAreInclusive() throws {
        let sliding = try BanyanBinary.run("generate", ["--model", Self.slidingModel, "--prompt-tokens", Self.ids(8),
                                                        "--max-tokens", "8", "--temperature", "0", "--ignore-eos"])
        #expect(sliding.status == 0, "\(sliding)")
        #expect(sliding.stdout.split(separator: " ").count == 8, "\(sliding)")
        let context = try BanyanBinary.run("score", ["--prompt-tokens", "1", "--continuation-tokens",
                                                     (0..<511).map { _ in "5" }.joined(separator: ",")])
        #expect(context.status == 0, "\(context)")
        #expect(context.stdout.hasPrefix("[0] total -") && context.stdout.contains("(511 tokens; per token: "), "\(context)")
    }

    /// A flag value `validate()` rejects: ArgumentParser's usage error (status 64): the error line, then the
    /// subcommand's usage.
    struct FlagCase: Sendable, CustomStringConvertible {
        var description: String { arguments.joined(separator: " ") }
        var arguments: [String]
        var error: String
    }

    static let flagCases: [FlagCase] = [
        FlagCase(arguments: ["generate", "--n", "0"], error: "--n must be at least 1, got 0"),
        FlagCase(arguments: ["generate", "--max-tokens", "0"], error: "--max-tokens must be at least 1, got 0"),
        FlagCase(arguments: ["generate", "--temperature=-1"], error: "--temperature must be ≥ 0, got -1.0"),
        FlagCase(arguments: ["generate", "--temperature", "nan"], error: "--temperature must be ≥ 0, got nan"),
        FlagCase(arguments: ["generate", "--top-p", "0"], error: "--top-p must be in (0, 1], got 0.0"),
        FlagCase(arguments: ["generate", "--top-p", "1.5"], error: "--top-p must be in (0, 1], got 1.5"),
        FlagCase(arguments: ["generate", "--top-k=-1"], error: "--top-k must be ≥ 0, got -1"),
        FlagCase(arguments: ["generate", "--min-p", "2"], error: "--min-p must be in [0, 1], got 2.0"),
        FlagCase(arguments: ["generate", "--threads", "0"], error: "--threads must be at least 1, got 0"),
        FlagCase(arguments: ["generate", "--max-kv-bytes", "0"], error: "--max-kv-bytes must be positive, got 0"),
        FlagCase(arguments: ["generate", "--suffix", "a", "--suffix-tokens", "3"], error: "give --suffix or --suffix-tokens, not both"),
        FlagCase(arguments: ["generate", "--stop", ""], error: "--stop: empty stop string"),
        FlagCase(arguments: ["score"], error: "give one or more --continuation TEXT or --continuation-tokens 4,5,6 (not both)"),
        FlagCase(arguments: ["score", "--continuation", "a", "--continuation-tokens", "3"],
                 error: "give one or more --continuation TEXT or --continuation-tokens 4,5,6 (not both)"),
        FlagCase(arguments: ["info", "--threads", "0"], error: "--threads must be at least 1, got 0"),
    ]

    @Test(arguments: flagCases)
    func invalidFlag(_ c: FlagCase) throws {
        // The prompt is valid so the flag under test is the only problem.
        let prompt = c.arguments[0] == "info" ? [] : ["--prompt-tokens", "1,2"]
        let r = try BanyanBinary.run(c.arguments + prompt)
        #expect(r.status == 64 && !r.crashed, "\(r)")
        #expect(r.stdout == "")
        let lines = r.stderr.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.count == 4, "\(r)")
        #expect(lines.first == "Error: \(c.error)")
        expectUsage(lines.dropFirst(), c.arguments[0], r)
    }

    /// Prompt flags checked after the model is loaded: exactly one error line, exit 1, no usage text.
    static let promptCases: [FlagCase] = [
        FlagCase(arguments: ["generate", "--prompt-tokens", "1,x"], error: "--prompt-tokens: \"x\" is not a token id (expected e.g. 1,2,3)"),
        FlagCase(arguments: ["generate", "--prompt-tokens", "1,,2"], error: "--prompt-tokens: \"\" is not a token id (expected e.g. 1,2,3)"),
        FlagCase(arguments: ["generate", "--prompt-tokens", ""], error: "--prompt-tokens: empty token list"),
        FlagCase(arguments: ["generate", "--prompt", "Once upon a time"],
                 error: "--prompt needs a tokenizer and builtin:stories260k has none: pass --prompt-tokens 1,2,3 or --tokenizer PATH"),
        FlagCase(arguments: ["generate"], error: "give --prompt TEXT or --prompt-tokens 1,2,3"),
        FlagCase(arguments: ["generate", "--prompt", "a", "--prompt-tokens", "1"], error: "give only one of --prompt and --prompt-tokens"),
        FlagCase(arguments: ["generate", "--prompt-tokens", "1", "--suffix", "a"], error: "--suffix needs a tokenizer; use --suffix-tokens"),
        FlagCase(arguments: ["generate", "--prompt-tokens", "1", "--stop-token-ids", "2,two"],
                 error: "--stop-token-ids: \"two\" is not a token id (expected e.g. 1,2,3)"),
        FlagCase(arguments: ["score", "--prompt-tokens", "1", "--continuation-tokens", "3,y"],
                 error: "--continuation-tokens: \"y\" is not a token id (expected e.g. 1,2,3)"),
        FlagCase(arguments: ["score", "--prompt-tokens", "1", "--continuation", "hello"],
                 error: "--continuation needs a tokenizer; use --continuation-tokens"),
    ]

    @Test(arguments: promptCases)
    func invalidPrompt(_ c: FlagCase) throws {
        let extra = c.arguments[0] == "generate" ? ["--max-tokens", "1"] : []
        let r = try BanyanBinary.run(c.arguments[0], Array(c.arguments.dropFirst()) + extra)
        #expect(r.status == 1 && !r.crashed, "\(r)")
        #expect(r.stdout == "")
        #expect(r.stderr == "Error: \(c.error)\n", "\(r)")
    }

    /// Errors found in `run()` must not print the root command's usage, which points away from the flag at fault.
    @Test func runtimeFlagErrorsPrintNoRootUsage() throws {
        let r = try BanyanBinary.run("generate", ["--prompt-tokens", "1,x"])
        #expect(!r.stderr.contains("Usage:"), "\(r)")
    }
}
