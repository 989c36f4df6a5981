import Foundation
import Testing
import BanyanModel
import BanyanOpenAI
import BanyanTestSupport

/// Chat templates from GGUF metadata (`tokenizer.chat_template`).
@Suite struct GGUFChatTemplateTests {
    /// The template renders with BOS/EOS spelled from the token list.
    @Test func fromMetadata() throws {
        var image = GGUFImage.tinyLlama()
        image.metadata.append(("tokenizer.chat_template", .string("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{{ eos_token }}{% endfor %}")))
        let folder = try TemporaryFolder()
        let url = folder.url.appendingPathComponent("chat.gguf")
        try image.write(to: url)
        let template = try #require(try ChatTemplate.load(gguf: try GGUFFile(path: url.path)))
        // tinyLlama's tokens are a...f with BOS 1 and EOS 2.
        #expect(try template.render([ChatMessage(role: "user", content: "hi")], addGenerationPrompt: false) == "buser: hic")

        image.metadata.removeLast()
        try image.write(to: url)
        #expect(try ChatTemplate.load(gguf: try GGUFFile(path: url.path)) == nil)
        image.metadata.append(("tokenizer.chat_template", .u32(3)))
        try image.write(to: url)
        let error = #expect(throws: OpenAIError.self) { try ChatTemplate.load(gguf: try GGUFFile(path: url.path)) }
        #expect(error?.description == "\(url.path): tokenizer.chat_template must be a string")
    }

    /// SmolLM2's ChatML template with its default system prompt; skipped without ../shared.
    @Test func smolLM2() throws {
        guard let shared = FixturePaths.shared else {
            print("skipping SmolLM2 chat template: ../shared absent")
            return
        }
        let file = try GGUFFile(path: shared.appendingPathComponent("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf").path)
        let template = try #require(try ChatTemplate.load(gguf: file))
        #expect(try template.render([ChatMessage(role: "user", content: "Hi")]) ==
                "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    }
}
