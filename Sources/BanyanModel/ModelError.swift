import BanyanKernels

/// Errors from reading a checkpoint or its config; each message names the file and the problem.
public enum ModelError: BanyanError {
    case io(path: String, message: String)
    case config(file: String, field: String, message: String)
    case unsupportedArchitecture(String, file: String)
    case safetensors(file: String, message: String)
    case gguf(file: String, message: String)
    case missingTensor(name: String, files: String)
    case tensorMismatch(name: String, file: String, expected: String, found: String)
    case unknownSynthetic(String, known: [String])
    case invalidInput(String)

    public var description: String {
        switch self {
        case let .io(path, message): return "\(path): \(message)"
        case let .config(file, field, message): return "\(file): \(field): \(message)"
        case let .unsupportedArchitecture(name, file):
            return "\(file): architecture \"\(name)\" unsupported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)"
        case let .safetensors(file, message): return "\(file): \(message)"
        case let .gguf(file, message): return "\(file): \(message)"
        case let .missingTensor(name, files): return "\(files): tensor \"\(name)\" missing"
        case let .tensorMismatch(name, file, expected, found):
            return "\(file): tensor \"\(name)\": expected \(expected), found \(found)"
        case let .unknownSynthetic(name, known):
            return "synthetic model \"\(name)\" unknown (known: \(known.joined(separator: ", ")))"
        case let .invalidInput(message): return message
        }
    }
}
