import BanyanKernels

/// Errors of batch jobs: a bad input line (reported in that line's error record, the job goes on),
/// an unsupported chat template, or a job that cannot run at all (unreadable files).
public enum BatchError: BanyanError {
    /// One input line is wrong; `code` is the error record's `code` (e.g. `invalid_request`).
    case invalidLine(code: String, message: String)
    /// The chat template uses Jinja this renderer does not implement, or is malformed.
    case template(String)
    /// The template called `raise_exception(message)`.
    case templateRaised(String)
    /// The job cannot start or continue (files, a corrupt output file).
    case job(String)

    public var description: String {
        switch self {
        case .invalidLine(_, let m): return m
        case .template(let m): return "chat template: \(m)"
        case .templateRaised(let m): return "chat template raised: \(m)"
        case .job(let m): return m
        }
    }

    /// The error record's `code`.
    public var code: String {
        switch self {
        case .invalidLine(let code, _): return code
        case .template: return "unsupported_template"
        case .templateRaised: return "invalid_request"
        case .job: return "job_error"
        }
    }

    static func invalid(_ message: String) -> BatchError { .invalidLine(code: "invalid_request", message: message) }
}
