import Foundation
import Testing
import Hummingbird
import HummingbirdTesting
import NIOCore
import BanyanKernels
import BanyanModel
import BanyanEngine
import BanyanTokenizer
import BanyanOpenAI
import BanyanServer
import BanyanTestSupport

/// A ChatML template (SmolLM2's shape), written into a copy of the llama-text fixture.
let chatML = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

/// A server over a fresh engine (`spec` as `Model.load` takes it); the engine loop is shut down after `body`.
func withServer(_ spec: String = "builtin:stories260k", chatTemplate: String? = nil, maxWaiting: Int = 64, maxKVBytes: Int = 1 << 26,
                   configure: (inout ServerSettings) -> Void = { _ in },
                   _ body: @Sendable (any TestClientProtocol, Engine) async throws -> Void) async throws {
    let folder = try TemporaryFolder()
    var path = spec
    if !spec.contains(":") {
        let model = try folder.copyModel(spec)
        if let chatTemplate {
            try editJSONObject(at: model.appendingPathComponent("tokenizer_config.json")) { $0["chat_template"] = chatTemplate }
        }
        path = model.path
    }
    let pool = ThreadPool(threadCount: 1)
    let model = try Model.load(path, threads: pool)
    // The fixture folders used here have a tokenizer; the builtin model has none.
    let tokenizer = model.folder == nil || spec.contains(":") ? nil : try Tokenizer.load(path: path)
    var options = EngineOptions()
    options.threadCount = 1
    options.maxKVBytes = maxKVBytes
    let engine = try Engine(model: model, tokenizer: tokenizer, threads: pool, options: options)
    let loop = EngineLoop(engine: engine, policy: .fcfsLRU, maxWaiting: maxWaiting)
    var settings = ServerSettings(servedModelName: "test-model")
    configure(&settings)
    let template = try model.folder.flatMap { try ChatTemplate.load(modelFolder: $0) }
    let server = OpenAIServer(loop: loop, settings: settings, chatTemplate: template)
    let app = Application(router: server.router())
    do {
        try await app.test(.router) { client in try await body(client, engine) }
        await loop.shutdown()
    } catch {
        await loop.shutdown()
        throw error
    }
}

/// A JSON body from a dictionary.
func jsonBody(_ object: [String: Any]) -> ByteBuffer {
    ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
}

extension TestResponse {
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
    }
    var text: String { String(buffer: body) }
    var error: [String: Any] { json["error"] as? [String: Any] ?? [:] }
    var choices: [[String: Any]] { json["choices"] as? [[String: Any]] ?? [] }
    /// The `data:` payloads of a server-sent-event body, in order.
    var events: [String] {
        text.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { String($0.dropFirst("data: ".count)) }
    }
}

func post(_ client: any TestClientProtocol, _ uri: String, _ body: [String: Any], headers: HTTPFields = [:]) async throws -> TestResponse {
    try await client.execute(uri: uri, method: .post, headers: headers, body: jsonBody(body))
}

func object(_ s: String) -> [String: Any] {
    (try? JSONSerialization.jsonObject(with: Data(s.utf8))) as? [String: Any] ?? [:]
}

let storyPrompt = [1, 330, 361, 140, 473, 465, 466, 290]

@Suite("OpenAI server routes")
struct ServerTests {
    @Test("token-id completions equal generate run alone; n > 1 over a prompt list is indexed prompt * n + sample")
    func tokenCompletions() async throws {
        try await withServer { client, engine in
            let r = try await post(client, "/v1/completions", ["model": "test-model", "prompt": [storyPrompt, [1, 330]], "max_tokens": 6,
                                                               "n": 2, "temperature": 0.9, "seed": 11, "ignore_eos": true])
            #expect(r.status == .ok)
            #expect(r.json["object"] as? String == "text_completion" && r.json["seed"] as? Int == 11)
            var g = BanyanEngine.Request(prompt: [1])
            g.n = 2
            g.maxTokens = 6
            g.sampling = SamplingParameters(temperature: 0.9, seed: 11)
            g.ignoreEOS = true
            let alone = try engine.generate(g, suffixes: [Array(storyPrompt.dropFirst()), [330]]).completions
            #expect(r.choices.map { $0["index"] as? Int } == alone.map(\.index))
            #expect(r.choices.map { $0["tokens"] as? [Int] } == alone.map(\.tokens))
            // No tokenizer: the text is empty, not null.
            #expect(r.choices.allSatisfy { $0["text"] as? String == "" && $0["finish_reason"] as? String == "length" })
            let usage = try #require(r.json["usage"] as? [String: Any])
            #expect(usage["prompt_tokens"] as? Int == storyPrompt.count + 2 && usage["completion_tokens"] as? Int == 24)
        }
    }

    @Test("without a seed the server picks one and returns it; sending it back reproduces the response")
    func pickedSeed() async throws {
        try await withServer { client, _ in
            let body: [String: Any] = ["prompt": storyPrompt, "max_tokens": 8, "n": 3, "ignore_eos": true]
            let first = try await post(client, "/v1/completions", body)
            let seed = try #require(first.json["seed"] as? Int)
            var again = body
            again["seed"] = seed
            let second = try await post(client, "/v1/completions", again)
            #expect(second.choices.map { $0["tokens"] as? [Int] } == first.choices.map { $0["tokens"] as? [Int] })
            #expect(first.choices.count == 3)
        }
    }

    @Test("streaming: data: chunks, per-choice tokens equal the non-streamed response, usage chunk, [DONE]")
    func streamingFraming() async throws {
        try await withServer { client, _ in
            let body: [String: Any] = ["prompt": [storyPrompt, [1, 361]], "max_tokens": 5, "n": 2, "seed": 3, "ignore_eos": true, "logprobs": 2]
            let whole = try await post(client, "/v1/completions", body)
            var streamed = body
            streamed["stream"] = true
            streamed["stream_options"] = ["include_usage": true]
            let r = try await post(client, "/v1/completions", streamed)
            #expect(r.status == .ok && r.headers[.contentType] == "text/event-stream")
            #expect(r.text.hasPrefix("data: ") && r.text.hasSuffix("data: [DONE]\n\n"))
            let events = r.events
            #expect(events.last == "[DONE]")
            let chunks = events.dropLast().map(object)
            let usageChunk = try #require(chunks.last)
            #expect((usageChunk["choices"] as? [Any])?.isEmpty == true)
            #expect((usageChunk["usage"] as? [String: Any])?["completion_tokens"] as? Int == 20)
            var tokens: [Int: [Int]] = [:], finish: [Int: String] = [:], logprobCount: [Int: Int] = [:]
            for chunk in chunks.dropLast() {
                #expect(chunk["object"] as? String == "text_completion" && chunk["seed"] as? Int == 3)
                for c in chunk["choices"] as? [[String: Any]] ?? [] {
                    let i = try #require(c["index"] as? Int)
                    tokens[i, default: []] += c["tokens"] as? [Int] ?? []
                    if let f = c["finish_reason"] as? String { finish[i] = f }
                    logprobCount[i, default: 0] += ((c["logprobs"] as? [String: Any])?["token_logprobs"] as? [Any])?.count ?? 0
                }
            }
            for c in whole.choices {
                let i = try #require(c["index"] as? Int)
                #expect(tokens[i] == c["tokens"] as? [Int], "choice \(i)")
                #expect(finish[i] == "length" && logprobCount[i] == 5, "choice \(i)")
            }
            #expect(tokens.count == 4)
        }
    }

    @Test("text completions: stop strings cut the text; echo with logprobs and max_tokens 1 scores the prompt")
    func textCompletions() async throws {
        try await withServer("llama-text") { client, engine in
            let greedy = try await post(client, "/v1/completions", ["prompt": "Once upon a time", "max_tokens": 12, "temperature": 0])
            let text = try #require(greedy.choices.first?["text"] as? String)
            var g = BanyanEngine.Request(prompt: try engine.encodePrompt("Once upon a time"))
            g.maxTokens = 12
            g.sampling = SamplingParameters(temperature: 0)
            #expect(text == (try engine.generate(g).completions[0].text))
            // Stop at the first letter the greedy text shows after its first two characters.
            let cut = text.dropFirst(2).first { $0.isLetter }.map(String.init)
            if let cut {
                let stopped = try await post(client, "/v1/completions", ["prompt": "Once upon a time", "max_tokens": 12, "temperature": 0, "stop": cut])
                let s = try #require(stopped.choices.first)
                #expect(s["finish_reason"] as? String == "stop")
                #expect((s["text"] as? String).map { text.hasPrefix($0) && !$0.contains(cut) } == true, "\(s)")
            }
            let scored = try await post(client, "/v1/completions", ["prompt": "Once upon a time", "max_tokens": 1, "temperature": 0,
                                                                    "echo": true, "logprobs": 1])
            let c = try #require(scored.choices.first)
            #expect((c["text"] as? String)?.hasPrefix("Once upon a time") == true)
            let lp = try #require(c["logprobs"] as? [String: Any])
            let values = try #require(lp["token_logprobs"] as? [Any])
            #expect(values.count == g.prompt.count + 1 && values.first is NSNull && values.dropFirst().allSatisfy { ($0 as? Double).map { $0 <= 0 } == true })
            #expect((lp["tokens"] as? [String])?.count == values.count && (lp["text_offset"] as? [Int])?.first == 0)
            // Streamed, the echoed prompt and its logprobs lead the choice's first chunk.
            let streamed = try await post(client, "/v1/completions", ["prompt": "Once upon a time", "max_tokens": 1, "temperature": 0,
                                                                      "echo": true, "logprobs": 1, "stream": true])
            let choices = streamed.events.dropLast().map(object).compactMap { ($0["choices"] as? [[String: Any]])?.first }
            #expect(choices.compactMap { $0["text"] as? String }.joined() == c["text"] as? String)
            let streamedValues = choices.flatMap { (($0["logprobs"] as? [String: Any])?["token_logprobs"] as? [Any]) ?? [] }
            #expect(streamedValues.count == values.count && streamedValues.first is NSNull)
            let offsets = choices.flatMap { (($0["logprobs"] as? [String: Any])?["text_offset"] as? [Int]) ?? [] }
            #expect(offsets == lp["text_offset"] as? [Int])
        }
    }

    @Test("chat: the template's prompt, the same content streamed or not, role first in the stream")
    func chat() async throws {
        try await withServer("llama-text", chatTemplate: chatML) { client, engine in
            let messages: [[String: Any]] = [["role": "system", "content": "Be brief."],
                                             ["role": "user", "content": [["type": "text", "text": "Hello"], ["type": "text", "text": "there"]]]]
            let body: [String: Any] = ["messages": messages, "max_tokens": 8, "temperature": 0, "logprobs": true, "top_logprobs": 2]
            let r = try await post(client, "/v1/chat/completions", body)
            #expect(r.status == .ok && r.json["object"] as? String == "chat.completion")
            let message = try #require(r.choices.first?["message"] as? [String: Any])
            let content = try #require(message["content"] as? String)
            let rendered = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello\nthere<|im_end|>\n<|im_start|>assistant\n"
            var g = BanyanEngine.Request(prompt: try #require(engine.tokenizer).encode(rendered, addSpecialTokens: false))
            g.maxTokens = 8
            g.sampling = SamplingParameters(temperature: 0)
            let alone = try engine.generate(g).completions[0]
            #expect(content == alone.text && r.choices.first?["tokens"] as? [Int] == alone.tokens)
            let lp = ((r.choices.first?["logprobs"] as? [String: Any])?["content"] as? [[String: Any]]) ?? []
            #expect(lp.count == alone.tokens.count && (lp.first?["top_logprobs"] as? [Any])?.count == 2)

            var streamed = body
            streamed["stream"] = true
            let s = try await post(client, "/v1/chat/completions", streamed)
            let chunks = s.events.dropLast().map(object)
            #expect(s.events.last == "[DONE]")
            let deltas = chunks.compactMap { ($0["choices"] as? [[String: Any]])?.first?["delta"] as? [String: Any] }
            #expect(deltas.first?["role"] as? String == "assistant")
            #expect(chunks.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
            #expect(deltas.compactMap { $0["content"] as? String }.joined() == content)
            #expect(chunks.last.flatMap { ($0["choices"] as? [[String: Any]])?.first?["finish_reason"] as? String } != nil)

            let tokenized = try await post(client, "/tokenize", ["messages": messages])
            #expect(tokenized.json["tokens"] as? [Int] == g.prompt && tokenized.json["count"] as? Int == g.prompt.count)
        }
    }

    @Test("a model without a chat template gets a clear 400 for chat")
    func noTemplate() async throws {
        try await withServer("llama-text") { client, _ in
            let r = try await post(client, "/v1/chat/completions", ["messages": [["role": "user", "content": "hi"]]])
            #expect(r.status == .badRequest)
            #expect((r.error["message"] as? String)?.contains("chat template") == true)
        }
    }

    @Test("tokenize and detokenize round-trip (vLLM's shapes)")
    func tokenizeRoundTrip() async throws {
        try await withServer("llama-text") { client, engine in
            let t = try await post(client, "/tokenize", ["prompt": "Once upon a time"])
            let tokens = try #require(t.json["tokens"] as? [Int])
            #expect(tokens == (try engine.encodePrompt("Once upon a time")) && t.json["max_model_len"] as? Int == 256)
            let plain = try await post(client, "/tokenize", ["prompt": "Once upon a time", "add_special_tokens": false])
            #expect((plain.json["tokens"] as? [Int]) == Array(tokens.dropFirst()))
            let d = try await post(client, "/detokenize", ["tokens": Array(tokens.dropFirst())])
            #expect(d.json["prompt"] as? String == "Once upon a time")
            let bad = try await post(client, "/detokenize", ["tokens": [1, 99999]])
            #expect(bad.status == .badRequest && bad.error["param"] as? String == "tokens")
        }
    }

    @Test("models, health and metrics")
    func infoRoutes() async throws {
        try await withServer { client, _ in
            let models = try await client.execute(uri: "/v1/models", method: .get)
            let data = try #require(models.json["data"] as? [[String: Any]])
            #expect(data.map { $0["id"] as? String } == ["test-model"] && data.first?["max_model_len"] as? Int == 512)
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
            _ = try await post(client, "/v1/completions", ["prompt": storyPrompt, "max_tokens": 3, "ignore_eos": true])
            let metrics = try await client.execute(uri: "/metrics", method: .get).text
            for name in ["banyan_requests_running", "banyan_requests_waiting", "banyan_kv_blocks_used", "banyan_kv_blocks_total",
                         "banyan_prompt_tokens_cached_total", "banyan_prompt_tokens_total", "banyan_generation_tokens_total",
                         "banyan_requests_aborted_total", "banyan_http_client_disconnects_total"] {
                #expect(metrics.contains("\n\(name) ") || metrics.hasPrefix("\(name) ") || metrics.contains("# TYPE \(name) "), "\(name)")
            }
            // The server measured the first token of the completion above.
            #expect(metrics.contains("banyan_time_to_first_token_seconds_count 1"))
        }
    }

    @Test("bad input is a 4xx OpenAI error object naming the parameter, never a 500", arguments: [
        // (body, status, code, param)
        (#"{"prompt": [1, 2], "n": "two"}"#, 400, "invalid_request", "n"),
        (#"{"prompt": [1, 2], "top_p": 2}"#, 400, "invalid_request", "top_p"),
        (#"{"prompt": [1, 2], "logprobs": 21}"#, 400, "invalid_request", "logprobs"),
        (#"{"prompt": [1, 2], "max_tokens": -1}"#, 400, "invalid_request", "max_tokens"),
        (#"{"prompt": [1, 2], "max_tokens": 0}"#, 400, "invalid_request", "max_tokens"),
        (#"{"prompt": [1, 2], "frobnicate": 1}"#, 400, "unknown_field", "frobnicate"),
        (#"{"prompt": [1, 2], "logit_bias": {"5": 10}}"#, 400, "invalid_request", "logit_bias"),
        (#"{"prompt": [1, 2], "presence_penalty": 0.5}"#, 400, "invalid_request", "presence_penalty"),
        (#"{"prompt": [1, 2], "response_format": {"type": "json_object"}}"#, 400, "invalid_request", "response_format"),
        (#"{"prompt": [1, 2], "stream_options": {"include_usage": true}}"#, 400, "invalid_request", "stream_options"),
        (#"{"prompt": [1, 2], "max_tokens": 600}"#, 400, "context_length_exceeded", ""),
        (#"{"prompt": [1, 99999]}"#, 400, "invalid_request", ""),
        (#"{"prompt": "text needs a tokenizer"}"#, 400, "invalid_request", "prompt"),
        (#"{"prompt": [1, 2], "model": "gpt-4"}"#, 404, "model_not_found", ""),
        (#"{"prompt": [1, 2"#, 400, "invalid_json", ""),
        (#"[1, 2]"#, 400, "invalid_json", ""),
    ])
    func badInput(_ body: String, _ status: Int, _ code: String, _ param: String) async throws {
        try await withServer { client, _ in
            let r = try await client.execute(uri: "/v1/completions", method: .post, body: ByteBuffer(string: body))
            #expect(r.status.code == status, "\(body): \(r.text)")
            #expect(r.error["code"] as? String == code && r.error["type"] as? String == "invalid_request_error", "\(r.text)")
            #expect((r.error["param"] as? String ?? "") == param, "\(r.text)")
            #expect((r.error["message"] as? String)?.isEmpty == false)
        }
    }

    @Test("unsupported parameters at their no-op value are accepted")
    func neutralValues() async throws {
        try await withServer { client, _ in
            let r = try await post(client, "/v1/completions", [
                "prompt": [1, 2], "max_tokens": 2, "frequency_penalty": 0, "presence_penalty": 0, "logit_bias": [String: Any](),
                "response_format": ["type": "text"], "user": "someone", "stream": false, "n": 1, "tools": NSNull(), "best_of": 1,
            ])
            #expect(r.status == .ok, "\(r.text)")
            #expect(r.choices.count == 1)
        }
    }

    @Test("unknown routes are 404 and bodies over the limit 413, as OpenAI error objects")
    func routesAndLimits() async throws {
        try await withServer(configure: { $0.maxBodyBytes = 1000 }) { client, _ in
            let missing = try await client.execute(uri: "/v1/embeddings", method: .post, body: ByteBuffer(string: "{}"))
            #expect(missing.status == .notFound && missing.error["code"] as? String == "not_found")
            let big = try await post(client, "/v1/completions", ["prompt": Array(repeating: 5, count: 600)])
            #expect(big.status == .contentTooLarge && big.error["code"] as? String == "payload_too_large")
        }
    }

    @Test("with --api-key, the API needs the bearer token; health and metrics stay open")
    func apiKey() async throws {
        try await withServer(configure: { $0.apiKey = "sesame" }) { client, _ in
            let none = try await post(client, "/v1/completions", ["prompt": [1, 2], "max_tokens": 1])
            #expect(none.status == .unauthorized && none.error["type"] as? String == "authentication_error")
            let wrong = try await post(client, "/v1/completions", ["prompt": [1, 2], "max_tokens": 1], headers: [.authorization: "Bearer nope"])
            #expect(wrong.status == .unauthorized)
            let right = try await post(client, "/v1/completions", ["prompt": [1, 2], "max_tokens": 1], headers: [.authorization: "Bearer sesame"])
            #expect(right.status == .ok)
            #expect(try await client.execute(uri: "/v1/models", method: .get).status == .unauthorized)
            #expect(try await client.execute(uri: "/health", method: .get).status == .ok)
            #expect(try await client.execute(uri: "/metrics", method: .get).status == .ok)
        }
    }

    @Test("a request that can never fit the KV budget is a 400 saying so")
    func kvBudget() async throws {
        // stories260k: 5 layers x 4 KV heads x 8 dims x (K, V) x 4 bytes = 1280 bytes a token; a
        // budget of 4 blocks of 32 tokens cannot hold a 300-token prompt.
        try await withServer(maxKVBytes: 4 * 32 * 1280) { client, _ in
            let r = try await post(client, "/v1/completions", ["prompt": [1] + Array(repeating: 300, count: 299), "max_tokens": 4])
            #expect(r.status == .badRequest && r.error["code"] as? String == "kv_budget_exceeded", "\(r.text)")
            let small = try await post(client, "/v1/completions", ["prompt": [1, 2, 3], "max_tokens": 4])
            #expect(small.status == .ok, "\(small.text)")
        }
    }

    @Test("a full waiting queue is 503")
    func overloaded() async throws {
        try await withServer(maxWaiting: 0) { client, _ in
            let r = try await post(client, "/v1/completions", ["prompt": [1, 2], "max_tokens": 1])
            #expect(r.status == .serviceUnavailable && r.error["code"] as? String == "service_unavailable", "\(r.text)")
        }
    }
}
