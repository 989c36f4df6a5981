import BanyanKernels

/// Errors of OpenAI request bodies and chat templates: what a client sent wrong (with the OpenAI
/// error `code` and the offending `param`), or a model's chat template that cannot be used.
public enum OpenAIError: BanyanError {
    /// The body is wrong; `code` is e.g. `invalid_request`, `invalid_json`, `unknown_field`;
    /// `param` names the field (without any `body.` prefix) when one is at fault.
    case invalidRequest(code: String, message: String, param: String?)
    /// The chat template uses Jinja this renderer does not implement, or is malformed.
    case template(String)
    /// The template called `raise_exception(message)` (the client's messages break its rules).
    case templateRaised(String)
    /// The model folder's template configuration is unreadable (`tokenizer_config.json`).
    case templateConfig(String)

    public var description: String {
        switch self {
        case .invalidRequest(_, let m, _): return m
        case .template(let m): return "chat template: \(m)"
        case .templateRaised(let m): return "chat template raised: \(m)"
        case .templateConfig(let m): return m
        }
    }

    /// The OpenAI / batch error record `code`.
    public var code: String {
        switch self {
        case .invalidRequest(let code, _, _): return code
        case .template: return "unsupported_template"
        case .templateRaised: return "invalid_request"
        case .templateConfig: return "job_error"
        }
    }

    /// The field at fault, if any.
    public var param: String? {
        if case .invalidRequest(_, _, let p) = self { return p }
        return nil
    }

    static func invalid(_ message: String, param: String? = nil) -> OpenAIError {
        .invalidRequest(code: "invalid_request", message: message, param: param)
    }
}
