import ArgumentParser
import Foundation
import BanyanEngine
import BanyanOpenAI

/// `banyan chat`: a conversation in the terminal with a chat model (its own chat template).
struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with a model in the terminal: each line you type is a user turn; the reply is printed.",
        discussion: """
        The model needs a tokenizer and a chat template (a GGUF file's metadata or a Hugging Face folder's \
        tokenizer_config.json), e.g. banyan chat --model SmolLM2-135M-Instruct.Q4_1.gguf. Reads turns from stdin \
        (an empty line or end of input ends the chat), or from --message (repeatable: one turn each).
        """)

    @OptionGroup var options: ModelOptions
    @Option(help: "A system message first.") var system: String?
    @Option(help: "A user turn to send instead of reading stdin (repeatable).") var message: [String] = []
    @Option(help: "Most tokens per reply.") var maxTokens: Int = 512
    @Option(help: "Sampling temperature; 0 is greedy.") var temperature: Float = 0.7
    @Option(help: "Nucleus sampling mass (1: off).") var topP: Float = 0.95
    @Option(help: "Random seed.") var seed: UInt64 = 0

    func validate() throws {
        try validateSamplingFlags(maxTokens: maxTokens, temperature: temperature, topP: topP)
    }

    func run() throws {
        let engine = try options.makeEngine()
        guard engine.tokenizer != nil else { throw CLIError("chat needs a tokenizer: \(options.model) has none (give --tokenizer)") }
        guard let template = try ChatTemplate.load(model: engine.model) else {
            throw CLIError("chat needs a chat template: \(options.model) has none")
        }
        // Rendered and encoded as the server and batch jobs do it.
        let parser = OpenAIRequestParser(engine: engine, chatTemplate: template)
        var messages: [ChatMessage] = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
        let interactive = message.isEmpty && isatty(0) != 0
        var scripted = message.makeIterator()
        func nextTurn() -> String? {
            if !message.isEmpty { return scripted.next() }
            if interactive { FileHandle.standardError.write(Data("> ".utf8)) }
            guard let line = readLine(), !line.trimmingCharacters(in: .whitespaces).isEmpty else { return nil }
            return line
        }
        var turn = 0
        while let text = nextTurn() {
            messages.append(ChatMessage(role: "user", content: text))
            let prompt = try parser.chatTokens(messages)
            var request = Request(prompt: prompt)
            request.maxTokens = maxTokens
            request.sampling = SamplingParameters(temperature: temperature, topP: topP, seed: seed &+ UInt64(turn))
            let result = try engine.generate(request)
            let reply = result.completions[0].text ?? ""
            print(reply.trimmingCharacters(in: .whitespacesAndNewlines))
            if result.completions[0].finishReason == .length {
                FileHandle.standardError.write(Data("(reply cut at --max-tokens \(maxTokens))\n".utf8))
            }
            messages.append(ChatMessage(role: "assistant", content: reply))
            turn += 1
        }
    }
}
