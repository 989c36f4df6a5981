import ArgumentParser
import Foundation
import Logging
import BanyanEngine
import BanyanOpenAI
import BanyanServer

extension Logger.Level: @retroactive ExpressibleByArgument {}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the OpenAI API (/v1/completions, /v1/chat/completions, /v1/models, /tokenize, /detokenize, /health, /metrics) over HTTP.",
        discussion: """
        Requests from all clients share one engine (continuous batching, prefix cache). Binds to 127.0.0.1 unless \
        --host says otherwise; prints "banyan serve: listening on http://HOST:PORT (model NAME)" on stderr when \
        ready; stops on SIGINT/SIGTERM after the requests in flight finish.
        """)

    @OptionGroup var options: ModelOptions
    @Option(help: "Address to bind.") var host: String = "127.0.0.1"
    @Option(help: "Port to listen on (0: any free port; the listening line gives it).") var port: Int = 8000
    @Option(help: "Require Authorization: Bearer KEY on the API routes.") var apiKey: String?
    @Option(help: "The model name clients use (default: the model's name).") var servedModelName: String?
    @Option(help: "Most sequences decoded per step.") var maxBatch: Int?
    @Option(help: "Most requests waiting to start; more get HTTP 503.") var maxWaiting: Int = 1024
    @Option(help: "How requests share prompt KV: fcfs-lru (FCFS + LRU prefix cache), prefix-tree or none.")
    var scheduler: SchedulingPolicy = .fcfsLRU
    @Option(help: "Largest request body in bytes (larger ones get HTTP 413).") var maxBodyBytes: Int = 32 << 20
    @Option(help: "Log level on stderr: trace, debug, info, notice, warning, error or critical.") var logLevel: Logger.Level = .info

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535, got \(port)") }
        if let b = maxBatch, b < 1 { throw ValidationError("--max-batch must be at least 1, got \(b)") }
        guard maxWaiting >= 1 else { throw ValidationError("--max-waiting must be at least 1, got \(maxWaiting)") }
        guard maxBodyBytes >= 1 else { throw ValidationError("--max-body-bytes must be at least 1, got \(maxBodyBytes)") }
        if let k = apiKey, k.isEmpty { throw ValidationError("--api-key must not be empty") }
    }

    func run() async throws {
        LoggingSystem.bootstrap(StreamLogHandler.standardError)
        var logger = Logger(label: "banyan.serve")
        logger.logLevel = logLevel
        let engine = try options.makeEngine()
        if let b = maxBatch { engine.options.maxBatch = b }
        let template = try ChatTemplate.load(model: engine.model)
        var settings = ServerSettings(servedModelName: servedModelName ?? engine.model.name)
        settings.host = host
        settings.port = port
        settings.apiKey = apiKey
        settings.maxBodyBytes = maxBodyBytes
        let loop = EngineLoop(engine: engine, policy: scheduler, maxWaiting: maxWaiting)
        let server = OpenAIServer(loop: loop, settings: settings, chatTemplate: template)
        let name = settings.servedModelName
        let app = server.application(logger: logger) { host, port in
            FileHandle.standardError.write(Data("banyan serve: listening on http://\(host):\(port) (model \(name))\n".utf8))
        }
        try await app.runService()
    }
}
