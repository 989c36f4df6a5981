/// JSON written with keys in a fixed order (the CLI and batch output contracts print documented orders).
public enum JSONOutput: Sendable {
    case object([(String, JSONOutput)])
    case array([JSONOutput])
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case null

    public var rendered: String {
        switch self {
        case .object(let fields):
            return "{" + fields.map { "\(JSONOutput.quote($0.0)):\($0.1.rendered)" }.joined(separator: ",") + "}"
        case .array(let items): return "[" + items.map(\.rendered).joined(separator: ",") + "]"
        case .string(let s): return JSONOutput.quote(s)
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? "\(d)" : "null"
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        }
    }

    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20:
                let hex = String(u.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

extension JSONOutput {
    public static func ints(_ xs: [Int]) -> JSONOutput { .array(xs.map { .int($0) }) }
    public static func doubles(_ xs: [Double]) -> JSONOutput { .array(xs.map { .double($0) }) }
    public static func optionalString(_ s: String?) -> JSONOutput { s.map { .string($0) } ?? .null }
}
