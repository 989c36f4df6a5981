import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import BanyanEngine
import BanyanModel
import BanyanOpenAI
import BanyanTokenizer

/// What `banyan serve` is told besides the engine's settings.
public struct ServerSettings: Sendable {
    /// Bound address; loopback unless told otherwise.
    public var host = "127.0.0.1"
    /// 0 picks a free port (the listening line and `onListening` give the real one).
    public var port = 8000
    /// When set, API routes need `Authorization: Bearer KEY`.
    public var apiKey: String? = nil
    /// The name clients put in `model` (and see in `/v1/models`).
    public var servedModelName: String
    /// Larger request bodies get 413.
    public var maxBodyBytes = 32 << 20

    public init(servedModelName: String) { self.servedModelName = servedModelName }
}

/// The request context of the server's routes: Hummingbird's, plus the connection, which tells a
/// response whose client left (so its engine requests are aborted).
public struct ServerContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// The OpenAI-compatible HTTP API over one `EngineLoop`: `/v1/completions`, `/v1/chat/completions`
/// (JSON or server-sent events), `/v1/models`, `/tokenize`, `/detokenize`, `/health`, `/metrics`.
/// Bodies are checked by the shared `OpenAIRequestParser`; every error becomes an OpenAI error object.
public struct OpenAIServer: Sendable {
    public let loop: EngineLoop
    public let settings: ServerSettings
    let parser: OpenAIRequestParser
    let format: ChoiceFormatter
    let metrics = ServerMetrics()
    let startTime = Int(Date().timeIntervalSince1970)

    public init(loop: EngineLoop, settings: ServerSettings, chatTemplate: ChatTemplate?) {
        self.loop = loop
        self.settings = settings
        parser = OpenAIRequestParser(engine: loop.engine, chatTemplate: chatTemplate)
        format = ChoiceFormatter(tokenizer: loop.engine.tokenizer)
    }

    var engine: Engine { loop.engine }

    /// The routes, behind the error and API-key middleware.
    public func router() -> Router<ServerContext> {
        let router = Router(context: ServerContext.self)
        router.add(middleware: OpenAIErrorMiddleware())
        if let key = settings.apiKey { router.add(middleware: APIKeyMiddleware(key: key)) }
        router.post("/v1/completions") { request, context in try await complete(request, context: context, endpoint: .completions) }
        router.post("/v1/chat/completions") { request, context in try await complete(request, context: context, endpoint: .chatCompletions) }
        router.get("/v1/models") { _, _ in models() }
        router.get("/health") { _, _ in json(.object([("status", .string("ok"))])) }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: metrics.render(loop.metrics))))
        }
        router.post("/tokenize") { request, _ in try await tokenize(request) }
        router.post("/detokenize") { request, _ in try await detokenize(request) }
        return router
    }

    /// The HTTP application with the engine loop as one of its services: one `ServiceGroup` runs
    /// both, and graceful shutdown stops the HTTP server first, then drains the engine.
    public func application(logger: Logger, onListening: @escaping @Sendable (_ host: String, _ port: Int) -> Void = { _, _ in })
        -> Application<RouterResponder<ServerContext>> {
        Application(router: router(),
                    configuration: .init(address: .hostname(settings.host, port: settings.port), serverName: "banyan"),
                    services: [loop],
                    onServerRunning: { channel in onListening(settings.host, channel.localAddress?.port ?? settings.port) },
                    logger: logger)
    }

    // MARK: - Routes

    func json(_ value: JSONOutput, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: value.rendered)))
    }

    /// The body as a JSON object (413 over the size limit, 400 when it is not a JSON object).
    func jsonObject(_ request: HummingbirdCore.Request) async throws -> [String: JSONValue] {
        let tooLarge = ServerError.payloadTooLarge("the request body exceeds \(settings.maxBodyBytes) bytes")
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > settings.maxBodyBytes { throw tooLarge }
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: settings.maxBodyBytes) } catch is NIOTooManyBytesError { throw tooLarge }
        guard let value = JSONValue.parse(Data(buffer.readableBytesView)) else {
            throw ServerError.badRequest("the body is not valid JSON", code: "invalid_json", param: nil)
        }
        guard let object = value.objectValue else {
            throw ServerError.badRequest("the body must be a JSON object, got \(value.brief)", code: "invalid_json", param: nil)
        }
        return object
    }

    func checkModel(_ name: String?) throws {
        if let name, name != settings.servedModelName {
            throw ServerError.notFound("the model `\(name)` does not exist (this server serves `\(settings.servedModelName)`)", code: "model_not_found")
        }
    }

    func models() -> Response {
        json(.object([("object", .string("list")), ("data", .array([.object([
            ("id", .string(settings.servedModelName)), ("object", .string("model")), ("created", .int(startTime)),
            ("owned_by", .string("banyan")), ("root", .string(engine.model.folder?.path ?? engine.model.name)),
            ("max_model_len", .int(engine.config.maxPositionCount)),
        ])]))]))
    }

    /// vLLM's `/tokenize`: `{"prompt": TEXT}` (special tokens added as for a completion unless
    /// `add_special_tokens: false`) or `{"messages": [...]}` (the chat template; none added unless asked).
    func tokenize(_ request: HummingbirdCore.Request) async throws -> Response {
        let body = try await jsonObject(request)
        try parser.checkUnknown(body, allowed: ["model", "prompt", "messages", "add_special_tokens", "add_generation_prompt"], where: "")
        try checkModel(body["model"]?.stringValue)
        guard let tok = engine.tokenizer else {
            throw ServerError.badRequest("tokenize needs a tokenizer and \(engine.model.name) has none", code: "invalid_request", param: nil)
        }
        func flag(_ key: String, default value: Bool) throws -> Bool {
            guard let v = body[key], v != .null else { return value }
            guard let b = v.boolValue else { throw ServerError.badRequest("\(key) must be true or false, got \(v.brief)", code: "invalid_request", param: key) }
            return b
        }
        let tokens: [Int]
        switch (body["prompt"], body["messages"]) {
        case (let p?, nil):
            guard let text = p.stringValue else { throw ServerError.badRequest("prompt must be a string, got \(p.brief)", code: "invalid_request", param: "prompt") }
            tokens = try flag("add_special_tokens", default: true) ? try engine.encodePrompt(text) : tok.encode(text, addSpecialTokens: false)
        case (nil, .some):
            guard let template = parser.chatTemplate else { _ = try parser.chatTokens([]); return json(.null) }
            let text = try template.render(try parser.chatMessages(body), addGenerationPrompt: try flag("add_generation_prompt", default: true))
            tokens = tok.encode(text, addSpecialTokens: try flag("add_special_tokens", default: false))
        default:
            throw ServerError.badRequest("give prompt or messages (one of them)", code: "invalid_request", param: "prompt")
        }
        return json(.object([("count", .int(tokens.count)), ("max_model_len", .int(engine.config.maxPositionCount)), ("tokens", .ints(tokens))]))
    }

    /// vLLM's `/detokenize`: `{"tokens": [ids]}` → `{"prompt": TEXT}`.
    func detokenize(_ request: HummingbirdCore.Request) async throws -> Response {
        let body = try await jsonObject(request)
        try parser.checkUnknown(body, allowed: ["model", "tokens"], where: "")
        try checkModel(body["model"]?.stringValue)
        guard let tok = engine.tokenizer else {
            throw ServerError.badRequest("detokenize needs a tokenizer and \(engine.model.name) has none", code: "invalid_request", param: nil)
        }
        guard let list = body["tokens"]?.arrayValue else {
            throw ServerError.badRequest("tokens must be a list of token ids", code: "invalid_request", param: "tokens")
        }
        let ids: [Int] = try list.map { v in
            guard let id = v.intValue, id >= 0, id < engine.config.vocabularySize else {
                throw ServerError.badRequest("tokens: \(v.brief) is not a token id (vocabulary size \(engine.config.vocabularySize))",
                                             code: "invalid_request", param: "tokens")
            }
            return id
        }
        return json(.object([("prompt", .string(try tok.decode(ids)))]))
    }

    /// `/v1/completions` and `/v1/chat/completions`: parse and validate the body, submit one engine
    /// request per prompt, wait for the first event (an error before any output is an HTTP error),
    /// then answer with one JSON object or a stream of server-sent events.
    func complete(_ request: HummingbirdCore.Request, context: ServerContext, endpoint: OpenAIEndpoint) async throws -> Response {
        let fields = try await jsonObject(request)
        let body = try parser.parse(fields, endpoint: endpoint, defaultSeed: UInt64.random(in: 0..<(1 << 53)))
        try checkModel(body.model)
        for (p, r) in body.requests.enumerated() {
            do { try engine.validate(r) } catch {
                // With several prompts, say which one.
                guard body.requests.count > 1, case let .badRequest(m, code, param) = ServerError(error) else { throw error }
                throw ServerError.badRequest("prompt[\(p)]: \(m)", code: code, param: param)
            }
        }
        let events = ResponseEvents(loop: loop, requests: body.requests, channel: context.channel)
        var response = ResponseState(body: body, format: format, metrics: metrics, model: body.model ?? settings.servedModelName)
        do {
            guard let first = try await events.next() else { throw ServerError.internalError("the engine ended a request without events") }
            response.apply(first)
            if body.stream { return stream(response, first: first, events: events) }
            while let e = try await events.next() { response.apply(e) }
        } catch is ClientGone {
            metrics.clientDisconnects.increment()
            throw ServerError.badRequest("the client disconnected", code: "client_disconnected", param: nil)
        }
        return json(response.whole())
    }

    func stream(_ state: ResponseState, first: TaggedEvent, events: ResponseEvents) -> Response {
        let metrics = metrics
        let body = ResponseBody { writer in
            var state = state
            do {
                for chunk in state.chunks(first) { try await writer.write(ByteBuffer(string: "data: \(chunk.rendered)\n\n")) }
                do {
                    while let e = try await events.next() {
                        state.apply(e)
                        for chunk in state.chunks(e) { try await writer.write(ByteBuffer(string: "data: \(chunk.rendered)\n\n")) }
                    }
                } catch let error where !(error is ClientGone) && !(error is CancellationError) {
                    // The status line is sent; a failure now can only be reported in the stream.
                    try await writer.write(ByteBuffer(string: "data: \(ServerError(error).json)\n\n"))
                }
                if let usage = state.usageChunk() { try await writer.write(ByteBuffer(string: "data: \(usage.rendered)\n\n")) }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                // The client left (a failed write, or the connection seen closed): stop the engine requests.
                events.cancel()
                metrics.clientDisconnects.increment()
                throw error
            }
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }
}

/// Raised into a response's events when its connection closed.
struct ClientGone: Error {}

/// An engine event and the index of the prompt (engine request) it belongs to.
typealias TaggedEvent = (prompt: Int, event: RequestEvent)

/// The events of one response's engine requests, merged in arrival order. Ending it early (client
/// gone, a failed write, `cancel()`) cancels the tasks that consume the engine streams, which
/// aborts those requests in the engine and releases their KV. One task reads it at a time (the
/// route handler, then the response body writer), hence the unchecked `Sendable`.
final class ResponseEvents: @unchecked Sendable {
    private var iterator: AsyncThrowingStream<TaggedEvent, any Error>.AsyncIterator
    private let continuation: AsyncThrowingStream<TaggedEvent, any Error>.Continuation

    init(loop: EngineLoop, requests: [BanyanEngine.Request], channel: (any Channel)?) {
        let (stream, continuation) = AsyncThrowingStream<TaggedEvent, any Error>.makeStream()
        self.continuation = continuation
        iterator = stream.makeAsyncIterator()
        let streams = requests.map { loop.submit($0) }
        let forward = Task {
            do {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (p, s) in streams.enumerated() {
                        group.addTask { for try await e in s { continuation.yield((p, e)) } }
                    }
                    try await group.waitForAll()
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        // NIO closes the channel when the peer does; nothing else tells a handler that is waiting
        // for the engine, so look every 50 ms. (A channel inactive from the start is a test's.)
        let watch = channel.flatMap { $0.isActive ? $0 : nil }.map { channel in
            Task<Void, Never> {
                while !Task.isCancelled && channel.isActive { try? await Task.sleep(for: .milliseconds(50)) }
                if !Task.isCancelled { continuation.finish(throwing: ClientGone()) }
            }
        }
        continuation.onTermination = { _ in
            forward.cancel()
            watch?.cancel()
        }
    }

    deinit { continuation.finish() }

    func next() async throws -> TaggedEvent? { try await iterator.next() }

    /// Ends the events now (the engine requests are aborted).
    func cancel() { continuation.finish() }
}
