/// Minimal ordered JSON for the CLI's output contract (keys printed in the documented order).
enum JSON {
    case object([(String, JSON)])
    case array([JSON])
    case string(String)
    case int(Int)
    case double(Double)
    case bool(Bool)
    case null

    var rendered: String {
        switch self {
        case .object(let fields):
            return "{" + fields.map { "\(JSON.quote($0.0)):\($0.1.rendered)" }.joined(separator: ",") + "}"
        case .array(let items): return "[" + items.map(\.rendered).joined(separator: ",") + "]"
        case .string(let s): return JSON.quote(s)
        case .int(let i): return String(i)
        case .double(let d): return d.isFinite ? "\(d)" : "null"
        case .bool(let b): return b ? "true" : "false"
        case .null: return "null"
        }
    }

    static func quote(_ s: String) -> String {
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

extension JSON {
    static func ints(_ xs: [Int]) -> JSON { .array(xs.map { .int($0) }) }
    static func doubles(_ xs: [Double]) -> JSON { .array(xs.map { .double($0) }) }
    static func optionalString(_ s: String?) -> JSON { s.map { .string($0) } ?? .null }
}
