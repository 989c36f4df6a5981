import Foundation
import Testing
import BanyanKernels
import BanyanModel
import BanyanEngine
import BanyanOpenAI

/// A body as the parser sees it.
func body(_ json: String) throws -> [String: JSONValue] {
    try #require(JSONValue.parse(Data(json.utf8))?.objectValue)
}

@Suite("OpenAI request bodies")
struct RequestParserTests {
    let parser: OpenAIRequestParser

    init() throws {
        let pool = ThreadPool(threadCount: 1)
        let engine = try Engine(model: try Model.load("builtin:stories260k", threads: pool), threads: pool)
        parser = OpenAIRequestParser(engine: engine, chatTemplate: nil)
    }

    @Test("echo with max_tokens 0 scores the prompt: no tokens to generate, prompt logprobs from the second token")
    func scoring() throws {
        let r = try parser.parse(try body(#"{"prompt": [1, 5, 9], "max_tokens": 0, "echo": true}"#), endpoint: .completions, defaultSeed: 1)
        #expect(r.echo && r.requests.count == 1)
        #expect(r.requests[0].maxTokens == 0 && r.requests[0].promptLogprobsFrom == 1)
        // Without echo there is nothing to return.
        #expect(throws: OpenAIError.self) {
            try parser.parse(try body(#"{"prompt": [1, 5, 9], "max_tokens": 0}"#), endpoint: .completions, defaultSeed: 1)
        }
    }

    @Test("a prompt list gives one request per prompt, sample streams numbered prompt * n + k; the default seed fills in")
    func promptList() throws {
        let r = try parser.parse(try body(#"{"prompt": [[1, 2], [1, 3, 4]], "n": 3, "stream": true, "stream_options": {"include_usage": true}}"#),
                                 endpoint: .completions, defaultSeed: 77)
        #expect(r.requests.map(\.prompt) == [[1, 2], [1, 3, 4]] && r.requests.map(\.rngIndexOffset) == [0, 3])
        #expect(r.seed == 77 && r.requests.allSatisfy { $0.sampling.seed == 77 && $0.maxTokens == 16 })
        #expect(r.stream && r.includeUsage && r.n == 3)
    }

    @Test("unsupported parameters: refused naming the field, unless at their no-op value", arguments: [
        (#""logit_bias": {"3": 1}"#, "logit_bias"), (#""tools": [{"type": "function"}]"#, "tools"),
        (#""response_format": {"type": "json_object"}"#, "response_format"), (#""frequency_penalty": 0.1"#, "frequency_penalty"),
        (#""best_of": 2"#, "best_of"), (#""suffix": "x""#, "suffix"), (#""whatever": 1"#, "whatever"),
    ])
    func unsupported(_ field: String, _ name: String) throws {
        do {
            _ = try parser.parse(try body("{\"prompt\": [1], \(field)}"), endpoint: .completions, defaultSeed: 0)
            Issue.record("\(field) accepted")
        } catch let e as OpenAIError {
            #expect(e.param == name && e.description.contains(name), "\(e)")
        }
        let neutral = #"{"prompt": [1], "logit_bias": {}, "tools": null, "response_format": {"type": "text"}, "frequency_penalty": 0, "best_of": 1, "suffix": "", "user": "u"}"#
        #expect(try parser.parse(try body(neutral), endpoint: .completions, defaultSeed: 0).requests.count == 1)
    }

    @Test("chat content may be a list of text parts (joined by newlines); other parts and tool roles are refused")
    func contentParts() throws {
        let messages = try parser.chatMessages(try body(#"{"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}"#))
        #expect(messages == [ChatMessage(role: "user", content: "a\nb")])
        #expect(throws: OpenAIError.self) {
            try parser.chatMessages(try body(#"{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}"#))
        }
        #expect(throws: OpenAIError.self) { try parser.chatMessages(try body(#"{"messages": [{"role": "tool", "content": "x"}]}"#)) }
    }
}
