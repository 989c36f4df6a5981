import Foundation
import Hummingbird
import HummingbirdCore
import NIOCore
import BanyanEngine
import BanyanKernels
import BanyanKV
import BanyanModel
import BanyanOpenAI
import BanyanTokenizer

/// An HTTP request that fails, with its status and the OpenAI error object's fields
/// (`{"error": {"message", "type", "param", "code"}}`). Every error a route throws becomes one of
/// these (`init(_:)`), so a client's mistake is never a 500.
public enum ServerError: BanyanError, HTTPResponseError {
    /// 400: malformed JSON, wrong types, out-of-range values, unsupported parameters, context overflow.
    case badRequest(String, code: String, param: String?)
    /// 401: `--api-key` is set and the request's bearer token is missing or wrong.
    case unauthorized(String)
    /// 404: unknown route or model.
    case notFound(String, code: String)
    /// 413: the body exceeds the server's limit.
    case payloadTooLarge(String)
    /// 503: the waiting queue is full or the server is shutting down.
    case unavailable(String)
    /// 500: a failure of the server itself (never the client's input).
    case internalError(String)

    public var description: String {
        switch self {
        case .badRequest(let m, _, _), .unauthorized(let m), .notFound(let m, _), .payloadTooLarge(let m), .unavailable(let m),
             .internalError(let m):
            return m
        }
    }

    public var status: HTTPResponse.Status {
        switch self {
        case .badRequest: return .badRequest
        case .unauthorized: return .unauthorized
        case .notFound: return .notFound
        case .payloadTooLarge: return .contentTooLarge
        case .unavailable: return .serviceUnavailable
        case .internalError: return .internalServerError
        }
    }

    /// The OpenAI error `type`.
    var type: String {
        switch self {
        case .badRequest, .notFound, .payloadTooLarge: return "invalid_request_error"
        case .unauthorized: return "authentication_error"
        case .unavailable: return "service_unavailable_error"
        case .internalError: return "server_error"
        }
    }

    var code: String? {
        switch self {
        case .badRequest(_, let code, _), .notFound(_, let code): return code
        case .unauthorized: return "invalid_api_key"
        case .payloadTooLarge: return "payload_too_large"
        case .unavailable: return "service_unavailable"
        case .internalError: return nil
        }
    }

    var param: String? {
        if case .badRequest(_, _, let p) = self { return p }
        return nil
    }

    /// The error object as JSON text.
    var json: String {
        JSONOutput.object([("error", .object([
            ("message", .string(description)), ("type", .string(type)),
            ("param", param.map { .string($0) } ?? .null), ("code", code.map { .string($0) } ?? .null),
        ]))]).rendered
    }

    public var headers: HTTPFields { [.contentType: "application/json"] }

    public func response(from request: HummingbirdCore.Request, context: some RequestContext) throws -> Response {
        Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: json)))
    }

    /// The HTTP error for anything a route or the engine throws.
    public init(_ error: any Error) {
        switch error {
        case let e as ServerError:
            self = e
        case let e as OpenAIError:
            self = .badRequest(e.description, code: e.code, param: e.param)
        case let e as EngineError:
            switch e {
            case .invalidRequest(let m): self = .badRequest(m, code: "invalid_request", param: nil)
            case .contextExceeded(let m): self = .badRequest(m, code: "context_length_exceeded", param: nil)
            case .overloaded(let m), .unavailable(let m): self = .unavailable(m)
            }
        case let e as TokenizerError:
            // Ids the model accepts but the tokenizer does not know (a padded vocabulary).
            self = .badRequest(e.description, code: "invalid_request", param: nil)
        case let KVError.outOfMemory(needed, free, budget):
            // Raised only for a request that cannot fit even in an empty cache: retrying cannot help.
            self = .badRequest("the request needs more KV cache than the server has (\(needed) more block(s), \(free) free within \(budget) bytes); lower n, max_tokens or the prompt",
                               code: "kv_budget_exceeded", param: nil)
        case let e as HTTPError where e.status == .notFound:
            self = .notFound("no such route (the API is /v1/completions, /v1/chat/completions, /v1/models, /tokenize, /detokenize, /health, /metrics)", code: "not_found")
        case let e as HTTPError where e.status == .contentTooLarge:
            self = .payloadTooLarge(e.body ?? "the request body is too large")
        case is NIOTooManyBytesError:
            self = .payloadTooLarge("the request body is too large")
        case let e as HTTPError where (400..<500).contains(e.status.code):
            self = .badRequest(e.body ?? e.status.reasonPhrase, code: "invalid_request", param: nil)
        default:
            self = .internalError("\(error)")
        }
    }
}

/// Turns every error below it into an OpenAI error response (unknown routes included).
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: HummingbirdCore.Request, context: Context, next: (HummingbirdCore.Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let e = ServerError(error)
            if case .internalError = e { context.logger.error("\(request.method) \(request.uri.path): \(error)") }
            return try e.response(from: request, context: context)
        }
    }
}

/// With `--api-key`: requests to the API (`/v1/...`, `/tokenize`, `/detokenize`) need
/// `Authorization: Bearer KEY`; `/health` and `/metrics` stay open for probes.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: String

    func handle(_ request: HummingbirdCore.Request, context: Context, next: (HummingbirdCore.Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if path != "/health" && path != "/metrics" {
            guard let header = request.headers[.authorization] else {
                throw ServerError.unauthorized("missing API key: send Authorization: Bearer KEY")
            }
            guard header == "Bearer " + key else { throw ServerError.unauthorized("incorrect API key") }
        }
        return try await next(request, context)
    }
}
