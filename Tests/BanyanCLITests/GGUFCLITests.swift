import Foundation
import Testing
import BanyanTestSupport

/// The CLI with a GGUF file as `--model` and `--tokenizer` (Tests/Fixtures/gguf, made by
/// scripts/make_gguf_fixtures.py with transformers' references).
@Suite struct GGUFCLITests {
    static let model = FixturePaths.gguf.appendingPathComponent("llama-q4_1.gguf").path

    /// A text prompt through the file's own tokenizer (no BOS: its add_bos_token is false) and greedy
    /// tokens as transformers decodes the same file.
    @Test func generate() throws {
        let ref = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: FixturePaths.gguf.appendingPathComponent("llama-q4_1.reference.json"))) as? [String: Any])
        let greedy = try #require(ref["greedy"] as? [String: Any])
        let prompt = try #require(greedy["prompt"] as? [Int]), tokens = try #require(greedy["tokens"] as? [Int])
        let out = try BanyanBinary.json("generate", ["--model", Self.model, "--prompt-tokens", idList(prompt),
                                                     "--max-tokens", String(tokens.count), "--temperature", "0", "--ignore-eos"])
        let c = try #require((out["completions"] as? [[String: Any]])?.first)
        #expect(c["tokens"] as? [Int] == tokens)

        let text = try BanyanBinary.json("generate", ["--model", Self.model, "--prompt", "hello there", "--max-tokens", "1"])
        let usage = try #require(text["usage"] as? [String: Any])
        #expect(usage["prompt_tokens"] as? Int == 7)  // [107, 269, 422, 35, 282, 267, 104], tokenizers.json
    }

    @Test func tokenizeAndDetokenize() throws {
        let ids = try BanyanBinary.run(["tokenize", "--tokenizer", Self.model, "--text", "<|im_start|>user\nhi there<|im_end|>\n", "--json"])
        #expect(ids.status == 0 && ids.stdout == "{\"ids\":[1,441,267,13,375,35,282,267,104,2,13]}\n", "\(ids)")
        let text = try BanyanBinary.run(["detokenize", "--tokenizer", Self.model, "--ids", "107,269,422,35,282,267,104"])
        #expect(text.status == 0 && text.stdout == "hello there\n", "\(text)")
    }

    /// `banyan chat` with the real SmolLM2 file (the README's one command), two scripted turns,
    /// greedy, with the model's own chat template and default system prompt. `--precision exact`:
    /// with 8-bit activations (`fast`, llama.cpp's arithmetic) this 135M model answers the first turn
    /// "L'Étoile, la Marseillaise, …", exactly as llama.cpp does on the same prompt.
    @Test func chatWithSmolLM2() throws {
        guard let shared = FixturePaths.shared else {
            print("skipping chatWithSmolLM2: ../shared absent")
            return
        }
        let file = shared.appendingPathComponent("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf").path
        let r = try BanyanBinary.run(["chat", "--model", file, "--threads", "2", "--precision", "exact", "--temperature", "0", "--max-tokens", "24",
                                      "--message", "What is the capital of France?", "--message", "And of Italy?"])
        #expect(r.status == 0 && !r.crashed, "\(r)")
        let replies = r.stdout.split(separator: "\n")
        #expect(replies.first?.contains("Paris") == true, "\(r.stdout)")
        #expect(r.stdout.contains("Rome"), "\(r.stdout)")
        // A model without a chat template says so.
        let none = try BanyanBinary.run("chat", ["--message", "hi"])
        #expect(none.status != 0 && !none.crashed && none.stderr.contains("chat needs a tokenizer"), "\(none)")
    }

    @Test func notAGGUFFile() throws {
        let folder = try TemporaryFolder()
        let url = folder.url.appendingPathComponent("model.gguf")
        try Data("GGML".utf8).write(to: url)
        let r = try BanyanBinary.run(["generate", "--model", url.path, "--prompt-tokens", "1"])
        #expect(r.status != 0 && !r.crashed && r.stderr.contains("\(url.path): not a GGUF file: magic is 47 47 4d 4c (expected \"GGUF\", 47 47 55 46)"), "\(r)")
    }
}
