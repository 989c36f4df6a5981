import Foundation

// The Jinja subset that Hugging Face chat templates (Llama 2/3, Qwen2, Mistral) use, with the
// environment transformers renders them in: `trim_blocks` and `lstrip_blocks` on, `loopcontrols`.
// Parsing rejects tags outside the subset (macro, call, include...); evaluation rejects unknown
// filters, tests and functions only when a branch that uses them actually runs, as Jinja does.

/// A value while a template renders (Python semantics for truth, equality and printing).
indirect enum JinjaValue: Sendable {
    case undefined
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case list([JinjaValue])
    /// Insertion-ordered, as Python dicts are.
    case dict([(String, JinjaValue)])
    case namespace(JinjaNamespace)
    case function(String)

    var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .list(let l): return !l.isEmpty
        case .dict(let d): return !d.isEmpty
        case .namespace, .function: return true
        }
    }

    subscript(key: String) -> JinjaValue {
        switch self {
        case .dict(let d): return d.first { $0.0 == key }?.1 ?? .undefined
        case .namespace(let n): return n.values.first { $0.0 == key }?.1 ?? .undefined
        default: return .undefined
        }
    }

    /// Python `str()`.
    var text: String {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python `repr()` (how lists and dicts print).
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return pythonFloat(d)
        case .string(let s):
            return "'" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'")
                .replacingOccurrences(of: "\n", with: "\\n") + "'"
        case .list(let l): return "[" + l.map(\.repr).joined(separator: ", ") + "]"
        case .dict(let d): return "{" + d.map { "'\($0.0)': \($0.1.repr)" }.joined(separator: ", ") + "}"
        case .namespace: return "<Namespace>"
        case .function(let f): return "<function \(f)>"
        }
    }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "none"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "string"
        case .list: return "list"
        case .dict: return "dict"
        case .namespace: return "namespace"
        case .function: return "function"
        }
    }

    var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    static func == (a: JinjaValue, b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let x), .string(let y)): return x == y
        case (.list(let x), .list(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0 == $1 }
        case (.dict(let x), .dict(let y)):
            return x.count == y.count && x.allSatisfy { k, v in y.contains { $0.0 == k && $0.1 == v } }
        default:
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }
}

/// `namespace(...)`: the one mutable value (set inside a loop, read after it).
final class JinjaNamespace: @unchecked Sendable {
    // Only touched by the single render that created it.
    var values: [(String, JinjaValue)]
    init(_ values: [(String, JinjaValue)]) { self.values = values }
}

func pythonFloat(_ d: Double) -> String {
    if d.isNaN { return "nan" }
    if d.isInfinite { return d > 0 ? "inf" : "-inf" }
    if d == d.rounded() && abs(d) < 1e16 { return String(format: "%.1f", d) }
    return "\(d)"
}

// MARK: - Syntax

indirect enum JinjaExpr: Sendable {
    case literal(JinjaValue)
    case name(String)
    case list([JinjaExpr])
    case dict([(JinjaExpr, JinjaExpr)])
    case attribute(JinjaExpr, String)
    case index(JinjaExpr, JinjaExpr)
    case slice(JinjaExpr, JinjaExpr?, JinjaExpr?, JinjaExpr?)
    case call(JinjaExpr, [JinjaExpr], [(String, JinjaExpr)])
    case filter(JinjaExpr, String, [JinjaExpr], [(String, JinjaExpr)])
    case test(JinjaExpr, String, [JinjaExpr], negated: Bool)
    case unary(String, JinjaExpr)
    case binary(String, JinjaExpr, JinjaExpr)
    case conditional(JinjaExpr, condition: JinjaExpr, otherwise: JinjaExpr?)
}

enum JinjaSetTarget: Sendable {
    case name(String)
    case attribute(String, String)
}

indirect enum JinjaNode: Sendable {
    case text(String)
    case output(JinjaExpr, line: Int)
    case ifBlock([(JinjaExpr, [JinjaNode])], otherwise: [JinjaNode], line: Int)
    case forBlock(targets: [String], iterable: JinjaExpr, filter: JinjaExpr?, body: [JinjaNode], otherwise: [JinjaNode], line: Int)
    case set(JinjaSetTarget, JinjaExpr, line: Int)
    case breakLoop, continueLoop
}

private struct Token {
    enum Kind: Equatable {
        case text(String)
        case outputOpen, blockOpen, close
        case name(String), string(String), int(Int), double(Double), op(String)
        case end
    }
    var kind: Kind
    var line: Int
}

/// Splits a template into text and tag tokens, applying `-` whitespace control, `trim_blocks` and `lstrip_blocks`.
private struct JinjaLexer {
    let s: [Unicode.Scalar]
    var i = 0
    var line = 1
    var tokens: [Token] = []

    init(_ source: String) { s = Array(source.unicodeScalars) }

    func at(_ j: Int) -> Unicode.Scalar? { j < s.count ? s[j] : nil }
    func starts(_ text: String, at j: Int) -> Bool {
        var k = j
        for u in text.unicodeScalars { guard at(k) == u else { return false }; k += 1 }
        return true
    }
    static func isSpace(_ u: Unicode.Scalar) -> Bool { u == " " || u == "\t" || u == "\n" || u == "\r" || u == "\u{0B}" || u == "\u{0C}" }

    mutating func run() throws -> [Token] {
        var lineStarting = true
        func countLines(_ xs: ArraySlice<Unicode.Scalar>) -> Int { xs.reduce(0) { $0 + ($1 == "\n" ? 1 : 0) } }
        while i < s.count {
            // Text up to the next tag.
            var j = i
            while j < s.count, !(s[j] == "{" && (at(j + 1) == "{" || at(j + 1) == "%" || at(j + 1) == "#")) { j += 1 }
            var text = Array(s[i..<j])
            let textLine = line
            line += countLines(s[i..<j])
            i = j
            guard i < s.count else {
                if !text.isEmpty { tokens.append(Token(kind: .text(String(String.UnicodeScalarView(text))), line: textLine)) }
                break
            }
            let kind = s[i + 1]
            let sign = at(i + 2)
            if sign == "-" {
                while let last = text.last, JinjaLexer.isSpace(last) { text.removeLast() }
            } else if sign != "+" && kind != "{" {
                // lstrip_blocks: a block or comment tag alone after indentation takes the indentation away.
                let lineStart = (text.lastIndex(of: "\n").map { $0 + 1 }) ?? 0
                if (lineStart > 0 || lineStarting) && text[lineStart...].allSatisfy({ $0 == " " || $0 == "\t" }) {
                    text.removeSubrange(lineStart...)
                }
            }
            if !text.isEmpty { tokens.append(Token(kind: .text(String(String.UnicodeScalarView(text))), line: textLine)) }
            i += (sign == "-" || sign == "+") ? 3 : 2
            let tagLine = line
            if kind == "#" {
                // Comment: skip to `#}`.
                var k = i
                while k < s.count, !starts("#}", at: k) { k += 1 }
                guard k < s.count else { throw OpenAIError.template("line \(tagLine): unclosed comment") }
                line += countLines(s[i..<k])
                let stripAfter = k > i && s[k - 1] == "-"
                i = k + 2
                lineStarting = finishTag(stripAfter: stripAfter, trim: true)
                continue
            }
            tokens.append(Token(kind: kind == "{" ? .outputOpen : .blockOpen, line: tagLine))
            let closer = kind == "{" ? "}}" : "%}"
            var stripAfter = false
            while true {
                while let u = at(i), JinjaLexer.isSpace(u) { if u == "\n" { line += 1 }; i += 1 }
                guard i < s.count else { throw OpenAIError.template("line \(tagLine): unclosed tag (expected \(closer))") }
                if starts(closer, at: i) { i += 2; break }
                if s[i] == "-" && starts(closer, at: i + 1) { stripAfter = true; i += 3; break }
                if s[i] == "+" && starts(closer, at: i + 1) { i += 3; break }
                try lexToken()
            }
            tokens.append(Token(kind: .close, line: line))
            lineStarting = finishTag(stripAfter: stripAfter, trim: kind == "%")
        }
        tokens.append(Token(kind: .end, line: line))
        return tokens
    }

    /// After a tag: `-` eats all following whitespace, trim_blocks one newline after a block tag.
    /// Returns whether what was consumed ended a line (for lstrip_blocks of the next tag).
    mutating func finishTag(stripAfter: Bool, trim: Bool) -> Bool {
        if stripAfter {
            var ended = false
            while let u = at(i), JinjaLexer.isSpace(u) { if u == "\n" { line += 1 }; ended = u == "\n"; i += 1 }
            return ended
        }
        if trim {
            if at(i) == "\n" { i += 1; line += 1; return true }
            if at(i) == "\r" && at(i + 1) == "\n" { i += 2; line += 1; return true }
        }
        return false
    }

    mutating func lexToken() throws {
        let u = s[i]
        let startLine = line
        if u == "'" || u == "\"" {
            var out = String.UnicodeScalarView()
            var k = i + 1
            while k < s.count && s[k] != u {
                if s[k] == "\\", k + 1 < s.count {
                    k += 1
                    switch s[k] {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "r": out.append("\r")
                    case "\\", "'", "\"": out.append(s[k])
                    default: out.append("\\"); out.append(s[k])
                    }
                } else {
                    if s[k] == "\n" { line += 1 }
                    out.append(s[k])
                }
                k += 1
            }
            guard k < s.count else { throw OpenAIError.template("line \(startLine): unterminated string") }
            i = k + 1
            tokens.append(Token(kind: .string(String(out)), line: startLine))
        } else if u.properties.numericType != nil && ("0"..."9").contains(u) {
            var k = i
            while let c = at(k), ("0"..."9").contains(c) { k += 1 }
            if at(k) == ".", let c = at(k + 1), ("0"..."9").contains(c) {
                k += 1
                while let c = at(k), ("0"..."9").contains(c) { k += 1 }
                tokens.append(Token(kind: .double(Double(String(String.UnicodeScalarView(s[i..<k])))!), line: line))
            } else {
                tokens.append(Token(kind: .int(Int(String(String.UnicodeScalarView(s[i..<k])))!), line: line))
            }
            i = k
        } else if u == "_" || u.properties.isAlphabetic {
            var k = i
            while let c = at(k), c == "_" || c.properties.isAlphabetic || ("0"..."9").contains(c) { k += 1 }
            tokens.append(Token(kind: .name(String(String.UnicodeScalarView(s[i..<k]))), line: line))
            i = k
        } else {
            for op in ["==", "!=", "<=", ">=", "//", "**"] where starts(op, at: i) {
                tokens.append(Token(kind: .op(op), line: line)); i += 2; return
            }
            guard "+-*/%~|.,:()[]{}<>=".unicodeScalars.contains(u) else {
                throw OpenAIError.template("line \(line): unexpected character '\(u)'")
            }
            tokens.append(Token(kind: .op(String(u)), line: line))
            i += 1
        }
    }
}

/// Recursive descent over the tokens, with Jinja's operator precedence.
private struct JinjaParser {
    let tokens: [Token]
    var p = 0

    var current: Token { tokens[p] }
    var line: Int { tokens[p].line }

    func fail(_ message: String) -> OpenAIError { .template("line \(line): \(message)") }

    func describe(_ k: Token.Kind) -> String {
        switch k {
        case .text: return "text"
        case .outputOpen: return "'{{'"
        case .blockOpen: return "'{%'"
        case .close: return "end of tag"
        case .name(let n): return "'\(n)'"
        case .string(let s): return "string '\(s)'"
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .op(let o): return "'\(o)'"
        case .end: return "end of template"
        }
    }

    mutating func isOp(_ o: String) -> Bool { current.kind == .op(o) }
    mutating func isName(_ n: String) -> Bool { current.kind == .name(n) }
    mutating func accept(_ o: String) -> Bool { if isOp(o) { p += 1; return true }; return false }
    mutating func acceptName(_ n: String) -> Bool { if isName(n) { p += 1; return true }; return false }
    mutating func expect(_ o: String) throws { guard accept(o) else { throw fail("expected '\(o)', found \(describe(current.kind))") } }
    mutating func expectClose() throws {
        guard current.kind == .close else { throw fail("expected end of tag, found \(describe(current.kind))") }
        p += 1
    }
    mutating func identifier() throws -> String {
        guard case .name(let n) = current.kind else { throw fail("expected a name, found \(describe(current.kind))") }
        p += 1
        return n
    }

    /// Parses nodes until a block tag whose keyword is in `terminators` (returned, tag left open after it) or the end.
    mutating func nodes(until terminators: Set<String>) throws -> ([JinjaNode], String?) {
        var out: [JinjaNode] = []
        while true {
            let tok = current
            switch tok.kind {
            case .end:
                return (out, nil)
            case .text(let t):
                out.append(.text(t)); p += 1
            case .outputOpen:
                p += 1
                let e = try expression()
                try expectClose()
                out.append(.output(e, line: tok.line))
            case .blockOpen:
                p += 1
                let keyword = try identifier()
                if terminators.contains(keyword) { return (out, keyword) }
                out += try statement(keyword, line: tok.line)
            default:
                throw fail("unexpected \(describe(tok.kind))")
            }
        }
    }

    mutating func statement(_ keyword: String, line: Int) throws -> [JinjaNode] {
        switch keyword {
        case "if":
            var branches: [(JinjaExpr, [JinjaNode])] = []
            var condition = try expression()
            try expectClose()
            while true {
                let (body, end) = try nodes(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                switch end {
                case "elif":
                    condition = try expression(); try expectClose()
                case "else":
                    try expectClose()
                    let (otherwise, end2) = try nodes(until: ["endif"])
                    guard end2 != nil else { throw OpenAIError.template("line \(line): 'if' is never closed (endif)") }
                    try expectClose()
                    return [.ifBlock(branches, otherwise: otherwise, line: line)]
                case "endif":
                    try expectClose()
                    return [.ifBlock(branches, otherwise: [], line: line)]
                default:
                    throw OpenAIError.template("line \(line): 'if' is never closed (endif)")
                }
            }
        case "for":
            var targets = [try identifier()]
            while accept(",") { targets.append(try identifier()) }
            guard acceptName("in") else { throw fail("expected 'in' in for loop") }
            let iterable = try orExpression()
            var filter: JinjaExpr? = nil
            if acceptName("if") { filter = try orExpression() }
            if isName("recursive") { throw fail("recursive loops are not supported") }
            try expectClose()
            let (body, end) = try nodes(until: ["else", "endfor"])
            var otherwise: [JinjaNode] = []
            if end == "else" {
                try expectClose()
                let (o, end2) = try nodes(until: ["endfor"])
                guard end2 != nil else { throw OpenAIError.template("line \(line): 'for' is never closed (endfor)") }
                otherwise = o
            } else if end == nil {
                throw OpenAIError.template("line \(line): 'for' is never closed (endfor)")
            }
            try expectClose()
            return [.forBlock(targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, line: line)]
        case "set":
            let name = try identifier()
            var target = JinjaSetTarget.name(name)
            if accept(".") { target = .attribute(name, try identifier()) }
            guard accept("=") else { throw fail("block 'set' (without '=') is not supported") }
            let value = try expression()
            try expectClose()
            return [.set(target, value, line: line)]
        case "break", "continue":
            try expectClose()
            return [keyword == "break" ? .breakLoop : .continueLoop]
        case "generation":
            // transformers' assistant-mask marker: renders its body unchanged.
            try expectClose()
            let (body, end) = try nodes(until: ["endgeneration"])
            guard end != nil else { throw OpenAIError.template("line \(line): 'generation' is never closed") }
            try expectClose()
            return body
        case "elif", "else", "endif", "endfor", "endgeneration":
            throw OpenAIError.template("line \(line): unexpected '\(keyword)' (no open block it belongs to)")
        default:
            throw OpenAIError.template("line \(line): unsupported tag '\(keyword)' (supported: if, elif, else, for, set, break, continue)")
        }
    }

    // Precedence, lowest first: conditional, or, and, not, comparisons, + -, ~, * / // %, **, unary, postfix/filters/tests.
    mutating func expression() throws -> JinjaExpr {
        var e = try orExpression()
        while acceptName("if") {
            let condition = try orExpression()
            var otherwise: JinjaExpr? = nil
            if acceptName("else") { otherwise = try expression() }
            e = .conditional(e, condition: condition, otherwise: otherwise)
        }
        return e
    }

    mutating func orExpression() throws -> JinjaExpr {
        var e = try andExpression()
        while acceptName("or") { e = .binary("or", e, try andExpression()) }
        return e
    }
    mutating func andExpression() throws -> JinjaExpr {
        var e = try notExpression()
        while acceptName("and") { e = .binary("and", e, try notExpression()) }
        return e
    }
    mutating func notExpression() throws -> JinjaExpr {
        if acceptName("not") { return .unary("not", try notExpression()) }
        return try comparison()
    }
    mutating func comparison() throws -> JinjaExpr {
        var e = try additive()
        while true {
            if case .op(let o) = current.kind, ["==", "!=", "<", "<=", ">", ">="].contains(o) {
                p += 1; e = .binary(o, e, try additive())
            } else if acceptName("in") {
                e = .binary("in", e, try additive())
            } else if isName("not"), case .name("in") = tokens[p + 1].kind {
                p += 2; e = .binary("not in", e, try additive())
            } else {
                return e
            }
        }
    }
    mutating func additive() throws -> JinjaExpr {
        var e = try concat()
        while true {
            if accept("+") { e = .binary("+", e, try concat()) }
            else if accept("-") { e = .binary("-", e, try concat()) }
            else { return e }
        }
    }
    mutating func concat() throws -> JinjaExpr {
        var e = try multiplicative()
        while accept("~") { e = .binary("~", e, try multiplicative()) }
        return e
    }
    mutating func multiplicative() throws -> JinjaExpr {
        var e = try power()
        while true {
            if case .op(let o) = current.kind, ["*", "/", "//", "%"].contains(o) { p += 1; e = .binary(o, e, try power()) }
            else { return e }
        }
    }
    mutating func power() throws -> JinjaExpr {
        var e = try unary()
        while accept("**") { e = .binary("**", e, try unary()) }
        return e
    }
    mutating func unary() throws -> JinjaExpr {
        if accept("-") { return try filtersAndTests(.unary("-", try unary(withFilters: false))) }
        if accept("+") { return try filtersAndTests(.unary("+", try unary(withFilters: false))) }
        return try unary(withFilters: true)
    }
    mutating func unary(withFilters: Bool) throws -> JinjaExpr {
        let e = try postfix(try primary())
        return withFilters ? try filtersAndTests(e) : e
    }

    mutating func filtersAndTests(_ start: JinjaExpr) throws -> JinjaExpr {
        var e = start
        while true {
            if accept("|") {
                let name = try identifier()
                var args: [JinjaExpr] = [], kwargs: [(String, JinjaExpr)] = []
                if isOp("(") { (args, kwargs) = try callArguments() }
                e = .filter(e, name, args, kwargs)
                e = try postfix(e)
            } else if acceptName("is") {
                let negated = acceptName("not")
                let name = try identifier()
                var args: [JinjaExpr] = []
                if isOp("(") { args = try callArguments().0 }
                else if case .name(let n) = current.kind, !["and", "or", "else", "if", "in", "not", "is"].contains(n) {
                    args = [try primary()]
                } else if case .string = current.kind { args = [try primary()] }
                else if case .int = current.kind { args = [try primary()] }
                e = .test(e, name, args, negated: negated)
            } else {
                return e
            }
        }
    }

    mutating func callArguments() throws -> ([JinjaExpr], [(String, JinjaExpr)]) {
        try expect("(")
        var args: [JinjaExpr] = [], kwargs: [(String, JinjaExpr)] = []
        while !accept(")") {
            if case .name(let n) = current.kind, tokens[p + 1].kind == .op("=") {
                p += 2
                kwargs.append((n, try expression()))
            } else {
                args.append(try expression())
            }
            if !isOp(")") { try expect(",") }
        }
        return (args, kwargs)
    }

    mutating func postfix(_ start: JinjaExpr) throws -> JinjaExpr {
        var e = start
        while true {
            if accept(".") {
                if case .int(let i) = current.kind { p += 1; e = .index(e, .literal(.int(i))); continue }
                e = .attribute(e, try identifier())
            } else if accept("[") {
                var parts: [JinjaExpr?] = [nil]
                var isSlice = false
                while !accept("]") {
                    if accept(":") { isSlice = true; parts.append(nil); continue }
                    guard parts[parts.count - 1] == nil else { throw fail("expected ']' or ':'") }
                    parts[parts.count - 1] = try expression()
                }
                if isSlice {
                    guard parts.count <= 3 else { throw fail("a slice has at most three parts") }
                    e = .slice(e, parts[0], parts.count > 1 ? parts[1] : nil, parts.count > 2 ? parts[2] : nil)
                } else {
                    guard let index = parts[0] else { throw fail("empty subscript") }
                    e = .index(e, index)
                }
            } else if isOp("(") {
                let (args, kwargs) = try callArguments()
                e = .call(e, args, kwargs)
            } else {
                return e
            }
        }
    }

    mutating func primary() throws -> JinjaExpr {
        let tok = current
        p += 1
        switch tok.kind {
        case .string(var s):
            // Adjacent string literals concatenate, as in Python.
            while case .string(let t) = current.kind { s += t; p += 1 }
            return .literal(.string(s))
        case .int(let i): return .literal(.int(i))
        case .double(let d): return .literal(.double(d))
        case .name(let n):
            switch n {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(n)
            }
        case .op("("):
            let e = try expression()
            if isOp(",") {
                var items = [e]
                while accept(",") { if isOp(")") { break }; items.append(try expression()) }
                try expect(")")
                return .list(items)
            }
            try expect(")")
            return e
        case .op("["):
            var items: [JinjaExpr] = []
            while !accept("]") {
                items.append(try expression())
                if !isOp("]") { try expect(",") }
            }
            return .list(items)
        case .op("{"):
            var items: [(JinjaExpr, JinjaExpr)] = []
            while !accept("}") {
                let k = try expression()
                try expect(":")
                items.append((k, try expression()))
                if !isOp("}") { try expect(",") }
            }
            return .dict(items)
        default:
            p -= 1
            throw fail("unexpected \(describe(tok.kind))")
        }
    }
}

func parseJinja(_ source: String) throws -> [JinjaNode] {
    var lexer = JinjaLexer(source)
    var parser = JinjaParser(tokens: try lexer.run())
    let (nodes, end) = try parser.nodes(until: ["elif", "else", "endif", "endfor", "endgeneration"])
    if let end { throw OpenAIError.template("line \(parser.tokens[parser.p].line): '\(end)' without a matching opening tag") }
    return nodes
}

// MARK: - Evaluation

/// Renders parsed nodes; one instance per render (it holds the variable scopes).
final class JinjaRenderer {
    private var scopes: [[String: JinjaValue]]
    private var line = 0
    var output = ""

    private enum Flow { case normal, breakLoop, continueLoop }

    init(globals: [String: JinjaValue]) {
        scopes = [globals]
    }

    private func fail(_ message: String) -> OpenAIError { .template("line \(line): \(message)") }

    func render(_ nodes: [JinjaNode]) throws {
        _ = try run(nodes)
    }

    private func run(_ nodes: [JinjaNode]) throws -> Flow {
        for node in nodes {
            switch node {
            case .text(let t):
                output += t
            case .output(let e, let l):
                line = l
                output += try eval(e).text
            case .ifBlock(let branches, let otherwise, let l):
                line = l
                var taken: [JinjaNode]? = nil
                for (condition, body) in branches where try eval(condition).isTruthy { taken = body; break }
                let flow = try run(taken ?? otherwise)
                if flow != .normal { return flow }
            case .forBlock(let targets, let iterable, let filter, let body, let otherwise, let l):
                line = l
                var items = try iterate(try eval(iterable))
                if let filter {
                    items = try items.filter { item in
                        scopes.append(bind(targets, item))
                        defer { scopes.removeLast() }
                        return try eval(filter).isTruthy
                    }
                }
                if items.isEmpty { let flow = try run(otherwise); if flow != .normal { return flow }; continue }
                for (i, item) in items.enumerated() {
                    var frame = bind(targets, item)
                    frame["loop"] = .dict([
                        ("index", .int(i + 1)), ("index0", .int(i)), ("first", .bool(i == 0)), ("last", .bool(i == items.count - 1)),
                        ("length", .int(items.count)), ("revindex", .int(items.count - i)), ("revindex0", .int(items.count - i - 1)),
                        ("previtem", i > 0 ? items[i - 1] : .undefined), ("nextitem", i + 1 < items.count ? items[i + 1] : .undefined),
                    ])
                    scopes.append(frame)
                    let flow = try run(body)
                    scopes.removeLast()
                    if flow == .breakLoop { break }
                }
            case .set(let target, let e, let l):
                line = l
                let value = try eval(e)
                switch target {
                case .name(let n): scopes[scopes.count - 1][n] = value
                case .attribute(let n, let attr):
                    guard case .namespace(let ns) = lookup(n) else { throw fail("cannot set '\(attr)' on '\(n)' (not a namespace)") }
                    if let i = ns.values.firstIndex(where: { $0.0 == attr }) { ns.values[i].1 = value } else { ns.values.append((attr, value)) }
                }
            case .breakLoop: return .breakLoop
            case .continueLoop: return .continueLoop
            }
        }
        return .normal
    }

    private func bind(_ targets: [String], _ item: JinjaValue) -> [String: JinjaValue] {
        if targets.count == 1 { return [targets[0]: item] }
        var frame: [String: JinjaValue] = [:]
        let parts: [JinjaValue]
        if case .list(let l) = item { parts = l } else { parts = [] }
        for (i, t) in targets.enumerated() { frame[t] = i < parts.count ? parts[i] : .undefined }
        return frame
    }

    private func lookup(_ name: String) -> JinjaValue {
        for frame in scopes.reversed() { if let v = frame[name] { return v } }
        return .undefined
    }

    private func iterate(_ v: JinjaValue) throws -> [JinjaValue] {
        switch v {
        case .list(let l): return l
        case .dict(let d): return d.map { .string($0.0) }
        case .string(let s): return s.map { .string(String($0)) }
        case .undefined: return []
        default: throw fail("cannot loop over a \(v.typeName)")
        }
    }

    func eval(_ e: JinjaExpr) throws -> JinjaValue {
        switch e {
        case .literal(let v): return v
        case .name(let n): return lookup(n)
        case .list(let items): return .list(try items.map(eval))
        case .dict(let items): return .dict(try items.map { (try eval($0.0).text, try eval($0.1)) })
        case .attribute(let base, let name): return try eval(base)[name]
        case .index(let base, let index):
            let b = try eval(base), i = try eval(index)
            switch (b, i) {
            case (.list(let l), .int(let k)):
                let j = k < 0 ? l.count + k : k
                return j >= 0 && j < l.count ? l[j] : .undefined
            case (.string(let s), .int(let k)):
                let chars = Array(s), j = k < 0 ? chars.count + k : k
                return j >= 0 && j < chars.count ? .string(String(chars[j])) : .undefined
            case (_, .string(let k)): return b[k]
            default: return .undefined
            }
        case .slice(let base, let lo, let hi, let step):
            let b = try eval(base)
            let stepValue = try step.map { try intArgument(try eval($0), "slice step") } ?? 1
            guard stepValue != 0 else { throw fail("slice step cannot be zero") }
            func cut<T>(_ xs: [T]) throws -> [T] {
                let n = xs.count
                func clamp(_ v: Int?, _ dflt: Int) -> Int {
                    guard var v else { return dflt }
                    if v < 0 { v += n }
                    return stepValue > 0 ? min(max(v, 0), n) : min(max(v, -1), n - 1)
                }
                let start = clamp(try lo.map { try intArgument(try eval($0), "slice start") }, stepValue > 0 ? 0 : n - 1)
                let stop = clamp(try hi.map { try intArgument(try eval($0), "slice end") }, stepValue > 0 ? n : -1)
                var out: [T] = []
                var k = start
                while stepValue > 0 ? k < stop : k > stop { out.append(xs[k]); k += stepValue }
                return out
            }
            switch b {
            case .list(let l): return .list(try cut(l))
            case .string(let s): return .string(String(try cut(Array(s))))
            default: throw fail("cannot slice a \(b.typeName)")
            }
        case .call(let callee, let args, let kwargs):
            let values = try args.map(eval)
            let named = try kwargs.map { ($0.0, try eval($0.1)) }
            if case .attribute(let base, let method) = callee {
                return try callMethod(try eval(base), method, values)
            }
            guard case .name(let f) = callee else { throw fail("only functions and methods can be called") }
            return try callFunction(f, values, named)
        case .filter(let base, let name, let args, _):
            return try applyFilter(name, try eval(base), try args.map(eval))
        case .test(let base, let name, let args, let negated):
            let result = try applyTest(name, try eval(base), try args.map(eval))
            return .bool(result != negated)
        case .unary(let op, let operand):
            let v = try eval(operand)
            switch op {
            case "not": return .bool(!v.isTruthy)
            case "-":
                if case .int(let i) = v { return .int(-i) }
                if case .double(let d) = v { return .double(-d) }
                throw fail("cannot negate a \(v.typeName)")
            default: return v
            }
        case .binary(let op, let l, let r):
            if op == "and" { let a = try eval(l); return a.isTruthy ? try eval(r) : a }
            if op == "or" { let a = try eval(l); return a.isTruthy ? a : try eval(r) }
            return try binary(op, try eval(l), try eval(r))
        case .conditional(let value, let condition, let otherwise):
            if try eval(condition).isTruthy { return try eval(value) }
            return try otherwise.map(eval) ?? .undefined
        }
    }

    private func intArgument(_ v: JinjaValue, _ what: String) throws -> Int {
        guard case .int(let i) = v else { throw fail("\(what) must be an integer, got \(v.typeName)") }
        return i
    }

    private func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        switch op {
        case "==": return .bool(a == b)
        case "!=": return .bool(!(a == b))
        case "<", "<=", ">", ">=":
            let order: Int
            if let x = a.number, let y = b.number { order = x < y ? -1 : (x > y ? 1 : 0) }
            else if case .string(let x) = a, case .string(let y) = b { order = x < y ? -1 : (x > y ? 1 : 0) }
            else { throw fail("cannot compare \(a.typeName) with \(b.typeName)") }
            switch op {
            case "<": return .bool(order < 0)
            case "<=": return .bool(order <= 0)
            case ">": return .bool(order > 0)
            default: return .bool(order >= 0)
            }
        case "in", "not in":
            let found: Bool
            switch (a, b) {
            case (.string(let x), .string(let y)): found = y.contains(x)
            case (_, .list(let l)): found = l.contains { $0 == a }
            case (.string(let k), .dict(let d)): found = d.contains { $0.0 == k }
            case (.string(let k), .namespace(let n)): found = n.values.contains { $0.0 == k }
            default: throw fail("'in' needs a string, list or dict on the right, got \(b.typeName)")
            }
            return .bool(found == (op == "in"))
        case "~": return .string(a.text + b.text)
        case "+":
            switch (a, b) {
            case (.string(let x), .string(let y)): return .string(x + y)
            case (.list(let x), .list(let y)): return .list(x + y)
            case (.int(let x), .int(let y)): return .int(x + y)
            default:
                if let x = a.number, let y = b.number, a.typeName != "bool" || b.typeName != "bool" { return .double(x + y) }
                throw fail("cannot add \(a.typeName) and \(b.typeName) (use ~ to join text)")
            }
        case "-", "*", "/", "//", "%", "**":
            if op == "*", case .string(let s) = a, case .int(let n) = b { return .string(String(repeating: s, count: max(0, n))) }
            if case .int(let x) = a, case .int(let y) = b, op != "/" {
                switch op {
                case "-": return .int(x - y)
                case "*": return .int(x * y)
                case "**": return .int(Int(pow(Double(x), Double(y))))
                default:
                    guard y != 0 else { throw fail("division by zero") }
                    let q = Int((Double(x) / Double(y)).rounded(.down))
                    return op == "//" ? .int(q) : .int(x - q * y)
                }
            }
            guard let x = a.number, let y = b.number else { throw fail("cannot apply '\(op)' to \(a.typeName) and \(b.typeName)") }
            switch op {
            case "-": return .double(x - y)
            case "*": return .double(x * y)
            case "**": return .double(pow(x, y))
            case "/": guard y != 0 else { throw fail("division by zero") }; return .double(x / y)
            case "//": guard y != 0 else { throw fail("division by zero") }; return .double((x / y).rounded(.down))
            default: guard y != 0 else { throw fail("division by zero") }; return .double(x - (x / y).rounded(.down) * y)
            }
        default:
            throw fail("unsupported operator '\(op)'")
        }
    }

    private func callFunction(_ f: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        switch f {
        case "raise_exception":
            throw OpenAIError.templateRaised(args.first?.text ?? "")
        case "namespace":
            var values = kwargs
            if case .dict(let d)? = args.first { values = d + values }
            return .namespace(JinjaNamespace(values))
        case "range":
            let ints = try args.map { try intArgument($0, "range()") }
            let (lo, hi) = ints.count == 1 ? (0, ints[0]) : (ints.first ?? 0, ints.count > 1 ? ints[1] : 0)
            return .list(lo < hi ? (lo..<hi).map { .int($0) } : [])
        default:
            throw fail("unsupported function '\(f)' (supported: raise_exception, namespace, range)")
        }
    }

    private func callMethod(_ v: JinjaValue, _ m: String, _ args: [JinjaValue]) throws -> JinjaValue {
        switch (v, m) {
        case (.string(let s), "strip"): return .string(s.trimmingCharacters(in: .whitespacesAndNewlines))
        case (.string(let s), "lstrip"): return .string(String(s.drop { $0.isWhitespace }))
        case (.string(let s), "rstrip"): return .string(String(s.reversed().drop { $0.isWhitespace }.reversed()))
        case (.string(let s), "upper"): return .string(s.uppercased())
        case (.string(let s), "lower"): return .string(s.lowercased())
        case (.string(let s), "startswith"): return .bool(s.hasPrefix(args.first?.text ?? ""))
        case (.string(let s), "endswith"): return .bool(s.hasSuffix(args.first?.text ?? ""))
        case (.string(let s), "replace"):
            guard args.count == 2 else { throw fail("replace() takes two arguments") }
            return .string(s.replacingOccurrences(of: args[0].text, with: args[1].text))
        case (.string(let s), "split"):
            if let sep = args.first, case .string(let t) = sep { return .list(s.components(separatedBy: t).map { .string($0) }) }
            return .list(s.split(whereSeparator: { $0.isWhitespace }).map { .string(String($0)) })
        case (.dict(let d), "items"): return .list(d.map { .list([.string($0.0), $0.1]) })
        case (.dict(let d), "keys"): return .list(d.map { .string($0.0) })
        case (.dict(let d), "values"): return .list(d.map { $0.1 })
        case (.dict, "get"):
            let r = v[args.first?.text ?? ""]
            if case .undefined = r { return args.count > 1 ? args[1] : .none }
            return r
        default:
            if case .undefined = v { throw fail("'\(m)' called on an undefined value") }
            throw fail("unsupported method '\(m)' on a \(v.typeName)")
        }
    }

    private func applyFilter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue]) throws -> JinjaValue {
        switch name {
        case "trim": return .string(v.text.trimmingCharacters(in: .whitespacesAndNewlines))
        case "length", "count":
            switch v {
            case .string(let s): return .int(s.count)
            case .list(let l): return .int(l.count)
            case .dict(let d): return .int(d.count)
            case .undefined: return .int(0)
            default: throw fail("'\(name)' of a \(v.typeName)")
            }
        case "upper": return .string(v.text.uppercased())
        case "lower": return .string(v.text.lowercased())
        case "capitalize": let s = v.text.lowercased(); return .string(s.prefix(1).uppercased() + s.dropFirst())
        case "string": return .string(v.text)
        case "int":
            switch v {
            case .int: return v
            case .double(let d): return .int(Int(d))
            case .bool(let b): return .int(b ? 1 : 0)
            default: return .int(Int(v.text.trimmingCharacters(in: .whitespaces)) ?? 0)
            }
        case "default", "d":
            let useIfFalsy = args.count > 1 && args[1].isTruthy
            if case .undefined = v { return args.first ?? .string("") }
            if useIfFalsy && !v.isTruthy { return args.first ?? .string("") }
            return v
        case "first", "last":
            let items = try iterate(v)
            return (name == "first" ? items.first : items.last) ?? .undefined
        case "join":
            return .string(try iterate(v).map(\.text).joined(separator: args.first?.text ?? ""))
        case "list": return .list(try iterate(v))
        case "replace":
            guard args.count == 2 else { throw fail("replace takes two arguments") }
            return .string(v.text.replacingOccurrences(of: args[0].text, with: args[1].text))
        case "tojson":
            let indent: Int? = args.first.flatMap { if case .int(let i) = $0 { return i }; return nil }
            return .string(try json(v, indent: indent, depth: 0))
        default:
            throw fail("unsupported filter '\(name)' (supported: trim, length, count, upper, lower, capitalize, string, int, default, first, last, join, list, replace, tojson)")
        }
    }

    /// Python's `json.dumps(v, ensure_ascii=False, indent=indent)` (what transformers' `tojson` does).
    private func json(_ v: JinjaValue, indent: Int?, depth: Int) throws -> String {
        let pad = indent.map { "\n" + String(repeating: " ", count: $0 * (depth + 1)) }
        let close = indent.map { "\n" + String(repeating: " ", count: $0 * depth) } ?? ""
        let sep = indent == nil ? ", " : ","
        switch v {
        case .none, .undefined: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int(let i): return String(i)
        case .double(let d): return pythonFloat(d).replacingOccurrences(of: "inf", with: "Infinity").replacingOccurrences(of: "nan", with: "NaN")
        case .string(let s):
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case "\u{08}": out += "\\b"
                case "\u{0C}": out += "\\f"
                case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
                default: out.unicodeScalars.append(u)
                }
            }
            return out + "\""
        case .list(let l):
            if l.isEmpty { return "[]" }
            return "[" + (pad ?? "") + (try l.map { try json($0, indent: indent, depth: depth + 1) }).joined(separator: sep + (pad ?? "")) + close + "]"
        case .dict(let d):
            if d.isEmpty { return "{}" }
            return "{" + (pad ?? "") + (try d.map { try json(.string($0.0), indent: nil, depth: 0) + ": " + json($0.1, indent: indent, depth: depth + 1) })
                .joined(separator: sep + (pad ?? "")) + close + "}"
        case .namespace, .function: throw fail("cannot convert a \(v.typeName) to JSON")
        }
    }

    private func applyTest(_ name: String, _ v: JinjaValue, _ args: [JinjaValue]) throws -> Bool {
        switch name {
        case "defined": if case .undefined = v { return false }; return true
        case "undefined": if case .undefined = v { return true }; return false
        case "none": if case .none = v { return true }; return false
        case "string": if case .string = v { return true }; return false
        case "number": if case .int = v { return true }; if case .double = v { return true }; return false
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": if case .bool(true) = v { return true }; return false
        case "false": if case .bool(false) = v { return true }; return false
        case "mapping": if case .dict = v { return true }; return false
        case "sequence", "iterable":
            switch v { case .list, .string, .dict: return true; default: return false }
        case "even", "odd":
            guard case .int(let i) = v else { throw fail("'\(name)' test of a \(v.typeName)") }
            return (i % 2 == 0) == (name == "even")
        case "equalto", "eq", "sameas": return args.first.map { $0 == v } ?? false
        default:
            throw fail("unsupported test '\(name)' (supported: defined, undefined, none, string, number, integer, float, boolean, true, false, mapping, sequence, iterable, even, odd, equalto)")
        }
    }
}
