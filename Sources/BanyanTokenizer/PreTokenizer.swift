/// Character classes the split regexes test, one bit each; a scalar with none of them is
/// "other" (`[^\s\p{L}\p{N}]`).
enum ScalarClass {
    static let letter: UInt8 = 1      // \p{L}
    static let number: UInt8 = 2      // \p{N}
    static let space: UInt8 = 4       // \s (Unicode White_Space, as Oniguruma uses)
    static let newline: UInt8 = 8     // [\r\n]

    static func of(_ value: UInt32) -> UInt8 {
        if value < 128 { return asciiTable[Int(value)] }
        return slow(value)
    }

    private static let asciiTable: [UInt8] = (0..<128).map { slow(UInt32($0)) }

    private static func slow(_ value: UInt32) -> UInt8 {
        guard let scalar = Unicode.Scalar(value) else { return 0 }
        if value == 0x0A || value == 0x0D { return space | newline }
        let properties = scalar.properties
        if properties.isWhitespace { return space }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return letter
        case .decimalNumber, .letterNumber, .otherNumber:
            return number
        default:
            return 0
        }
    }
}

/// The split regexes of the supported tokenizers, matched by hand. `NSRegularExpression` lacks
/// `\p{..}` in some builds, is slow, and would put Foundation in the encode path.
enum SplitRegex: Sendable, Equatable {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` (GPT-2).
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// (Llama 3 with `digitGroup` 3; Qwen2 writes `\p{N}` alone, `digitGroup` 1).
    case llama3(digitGroup: Int)
    /// `\p{N}`: each number scalar alone (`Digits` with `individual_digits`, SmolLM's first split).
    case digit

    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    init?(pattern: String) {
        switch pattern {
        case Self.gpt2Pattern: self = .gpt2
        case Self.llama3Pattern: self = .llama3(digitGroup: 3)
        case Self.qwen2Pattern: self = .llama3(digitGroup: 1)
        case #"\p{N}"#: self = .digit
        default: return nil
        }
    }

    /// Non-overlapping matches, leftmost first, as `find_iter` reports them.
    func matches(_ s: [UInt32]) -> [Range<Int>] {
        let classes = s.map(ScalarClass.of)
        var result: [Range<Int>] = []
        result.reserveCapacity(s.count / 3 + 1)
        var i = 0
        while i < s.count {
            let end: Int?
            switch self {
            case .gpt2: end = Self.matchGPT2(s, classes, at: i)
            case .llama3(let group): end = Self.matchLlama3(s, classes, at: i, digitGroup: group)
            case .digit: end = classes[i] & ScalarClass.number != 0 ? i + 1 : nil
            }
            if let end { result.append(i..<end); i = end } else { i += 1 }
        }
        return result
    }

    private static let apostrophe = UInt32(UInt8(ascii: "'"))
    private static let spaceScalar: UInt32 = 0x20

    /// End of the contraction alternative at `i`, or nil. `foldCase` applies Unicode simple case
    /// folding restricted to what can reach these ASCII letters (A-Z and U+017F LONG S).
    @inline(__always)
    private static func matchContraction(_ s: [UInt32], at i: Int, foldCase: Bool) -> Int? {
        guard s[i] == apostrophe, i + 1 < s.count else { return nil }
        func fold(_ c: UInt32) -> UInt32 {
            guard foldCase else { return c }
            if c >= 0x41 && c <= 0x5A { return c + 0x20 }
            if c == 0x17F { return UInt32(UInt8(ascii: "s")) }
            return c
        }
        let a = fold(s[i + 1])
        switch a {
        case UInt32(UInt8(ascii: "s")), UInt32(UInt8(ascii: "t")), UInt32(UInt8(ascii: "m")), UInt32(UInt8(ascii: "d")):
            return i + 2
        default: break
        }
        guard i + 2 < s.count else { return nil }
        let b = fold(s[i + 2])
        if (a == UInt32(UInt8(ascii: "r")) && b == UInt32(UInt8(ascii: "e")))
            || (a == UInt32(UInt8(ascii: "v")) && b == UInt32(UInt8(ascii: "e")))
            || (a == UInt32(UInt8(ascii: "l")) && b == UInt32(UInt8(ascii: "l"))) {
            return i + 3
        }
        return nil
    }

    /// `\s+(?!\S)|\s+` at `i` (caller checked `s[i]` is whitespace): the run minus its last
    /// scalar when a non-space follows, so that scalar can lead the next word.
    @inline(__always)
    private static func matchSpaces(_ classes: [UInt8], at i: Int) -> Int {
        var j = i
        while j < classes.count && classes[j] & ScalarClass.space != 0 { j += 1 }
        if j == classes.count { return j }
        return j - 1 > i ? j - 1 : j
    }

    private static func matchGPT2(_ s: [UInt32], _ classes: [UInt8], at i: Int) -> Int? {
        if let end = matchContraction(s, at: i, foldCase: false) { return end }
        let n = s.count
        // ` ?X+` for X in L, N, other: a leading space can only help, since a space is none of them.
        let k = (s[i] == spaceScalar && i + 1 < n) ? i + 1 : i
        let c = classes[k]
        if c & ScalarClass.space == 0 {
            let want = c & (ScalarClass.letter | ScalarClass.number)
            var j = k
            while j < n && classes[j] & (ScalarClass.letter | ScalarClass.number | ScalarClass.space) == want { j += 1 }
            return j
        }
        if classes[i] & ScalarClass.space != 0 { return matchSpaces(classes, at: i) }
        return nil
    }

    private static func matchLlama3(_ s: [UInt32], _ classes: [UInt8], at i: Int, digitGroup: Int) -> Int? {
        if let end = matchContraction(s, at: i, foldCase: true) { return end }
        let n = s.count
        let c = classes[i]
        // [^\r\n\p{L}\p{N}]?\p{L}+
        var letterStart = -1
        if c & ScalarClass.letter != 0 {
            letterStart = i
        } else if c & (ScalarClass.newline | ScalarClass.number) == 0, i + 1 < n, classes[i + 1] & ScalarClass.letter != 0 {
            letterStart = i + 1
        }
        if letterStart >= 0 {
            var j = letterStart
            while j < n && classes[j] & ScalarClass.letter != 0 { j += 1 }
            return j
        }
        // \p{N}{1,digitGroup}
        if c & ScalarClass.number != 0 {
            var j = i
            while j < n && j - i < digitGroup && classes[j] & ScalarClass.number != 0 { j += 1 }
            return j
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let k = (s[i] == spaceScalar && i + 1 < n && classes[i + 1] == 0) ? i + 1 : i
        if classes[k] == 0 {
            var j = k
            while j < n && classes[j] == 0 { j += 1 }
            while j < n && classes[j] & ScalarClass.newline != 0 { j += 1 }
            return j
        }
        guard c & ScalarClass.space != 0 else { return nil }
        // \s*[\r\n]+ : backtracking leaves the match ending just after the run's last newline.
        var j = i
        var lastNewline = -1
        while j < n && classes[j] & ScalarClass.space != 0 {
            if classes[j] & ScalarClass.newline != 0 { lastNewline = j }
            j += 1
        }
        if lastNewline >= 0 { return lastNewline + 1 }
        return matchSpaces(classes, at: i)
    }
}

/// How `Split` treats the matched delimiters (`SplitDelimiterBehavior`).
enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// What a `Split` pre-tokenizer looks for.
enum SplitPattern: Sendable, Equatable {
    case regex(SplitRegex)
    case literal([UInt32])

    func matches(_ s: [UInt32]) -> [Range<Int>] {
        switch self {
        case .regex(let regex):
            return regex.matches(s)
        case .literal(let needle):
            guard !needle.isEmpty, needle.count <= s.count else { return [] }
            var result: [Range<Int>] = []
            var i = 0
            while i + needle.count <= s.count {
                if s[i] == needle[0] && s[i..<(i + needle.count)].elementsEqual(needle) {
                    result.append(i..<(i + needle.count))
                    i += needle.count
                } else {
                    i += 1
                }
            }
            return result
        }
    }
}

/// A pre-tokenizer: splits normalized text into the words the model sees.
indirect enum PreTokenizer: Sendable {
    case sequence([PreTokenizer])
    case split(SplitPattern, SplitBehavior, invert: Bool)
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)

    /// GPT-2's byte-to-unicode table: printable Latin-1 bytes map to themselves, the rest to
    /// U+0100 onwards, so every byte is a visible character in the vocab.
    static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    func apply(_ pieces: [[UInt32]]) -> [[UInt32]] {
        switch self {
        case .sequence(let steps):
            var current = pieces
            for step in steps { current = step.apply(current) }
            return current
        case .split(let pattern, let behavior, let invert):
            var out: [[UInt32]] = []
            out.reserveCapacity(pieces.count)
            for piece in pieces { Self.split(piece, pattern: pattern, behavior: behavior, invert: invert, into: &out) }
            return out
        case .byteLevel(let addPrefixSpace, let useRegex):
            var out: [[UInt32]] = []
            out.reserveCapacity(pieces.count)
            for var piece in pieces {
                if addPrefixSpace && piece.first != 0x20 { piece.insert(0x20, at: 0) }
                if useRegex {
                    var words: [[UInt32]] = []
                    Self.split(piece, pattern: .regex(.gpt2), behavior: .isolated, invert: false, into: &words)
                    for word in words { out.append(Self.mapBytes(word)) }
                } else {
                    out.append(Self.mapBytes(piece))
                }
            }
            return out
        }
    }

    /// Replaces each scalar by its UTF-8 bytes, each byte shown as its `byteToScalar` character.
    static func mapBytes(_ word: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(word.count)
        for v in word {
            if v < 0x80 {
                out.append(byteToScalar[Int(v)])
            } else {
                for b in Unicode.Scalar(v)!.utf8 { out.append(byteToScalar[Int(b)]) }
            }
        }
        return out
    }

    /// `NormalizedString::split` semantics: label matches and gaps, merge per behavior, drop empties.
    static func split(_ s: [UInt32], pattern: SplitPattern, behavior: SplitBehavior, invert: Bool,
                      into out: inout [[UInt32]]) {
        if s.isEmpty { return }
        var labelled: [(Range<Int>, Bool)] = []
        var previous = 0
        for m in pattern.matches(s) {
            if m.lowerBound != previous { labelled.append((previous..<m.lowerBound, invert)) }
            labelled.append((m, !invert))
            previous = m.upperBound
        }
        if previous != s.count { labelled.append((previous..<s.count, invert)) }

        var kept: [Range<Int>] = []
        switch behavior {
        case .isolated:
            kept = labelled.map(\.0)
        case .removed:
            kept = labelled.filter { !$0.1 }.map(\.0)
        case .contiguous:
            var previousMatch = false
            for (range, isMatch) in labelled {
                if isMatch == previousMatch, let last = kept.last {
                    kept[kept.count - 1] = last.lowerBound..<range.upperBound
                } else {
                    kept.append(range)
                }
                previousMatch = isMatch
            }
        case .mergedWithPrevious:
            var previousMatch = false
            for (range, isMatch) in labelled {
                if isMatch && !previousMatch, let last = kept.last {
                    kept[kept.count - 1] = last.lowerBound..<range.upperBound
                } else {
                    kept.append(range)
                }
                previousMatch = isMatch
            }
        case .mergedWithNext:
            var previousMatch = false
            for (range, isMatch) in labelled.reversed() {
                if isMatch && !previousMatch, let last = kept.last {
                    kept[kept.count - 1] = range.lowerBound..<last.upperBound
                } else {
                    kept.append(range)
                }
                previousMatch = isMatch
            }
            kept.reverse()
        }
        for range in kept where !range.isEmpty { out.append(Array(s[range])) }
    }
}

/// A normalizer: rewrites text before pre-tokenization (Llama 2: prepend "▁", spaces to "▁").
indirect enum Normalizer: Sendable {
    case sequence([Normalizer])
    case prepend([UInt32])
    case replace(pattern: [UInt32], content: [UInt32])

    func apply(_ s: [UInt32]) -> [UInt32] {
        switch self {
        case .sequence(let steps):
            var current = s
            for step in steps { current = step.apply(current) }
            return current
        case .prepend(let prefix):
            // `Prepend` leaves an empty string empty.
            return s.isEmpty ? s : prefix + s
        case .replace(let pattern, let content):
            let found = SplitPattern.literal(pattern).matches(s)
            if found.isEmpty { return s }
            var out: [UInt32] = []
            out.reserveCapacity(s.count + found.count * max(0, content.count - pattern.count))
            var previous = 0
            for m in found {
                out.append(contentsOf: s[previous..<m.lowerBound])
                out.append(contentsOf: content)
                previous = m.upperBound
            }
            out.append(contentsOf: s[previous...])
            return out
        }
    }
}
