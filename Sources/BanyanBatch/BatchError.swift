import BanyanKernels

/// Errors of batch jobs: a bad input line (reported in that line's error record, the job goes on)
/// or a job that cannot run at all (unreadable files). Body and chat template errors are
/// `OpenAIError`s, recorded with their code.
public enum BatchError: BanyanError {
    /// One input line is wrong; `code` is the error record's `code` (e.g. `invalid_request`).
    case invalidLine(code: String, message: String)
    /// The job cannot start or continue (files, a corrupt output file).
    case job(String)

    public var description: String {
        switch self {
        case .invalidLine(_, let m): return m
        case .job(let m): return m
        }
    }

    /// The error record's `code`.
    public var code: String {
        switch self {
        case .invalidLine(let code, _): return code
        case .job: return "job_error"
        }
    }

    static func invalid(_ message: String) -> BatchError { .invalidLine(code: "invalid_request", message: message) }
}
