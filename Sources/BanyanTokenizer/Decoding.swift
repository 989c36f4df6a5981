/// How ids turn back into text, resolved from `tokenizer.json`'s `decoder` at load time.
/// Each id maps to fixed bytes (or, for `ByteFallback`, one raw byte), so decoding is a byte
/// stream plus a lossy UTF-8 pass and an optional `Strip` at the ends of the whole text.
struct DecoderPlan: Sendable {
    enum Joining: Sendable {
        /// A decoder is present: token outputs are concatenated.
        case concatenate
        /// No decoder: `tokenizers` joins token strings with a space.
        case space
    }
    var joining: Joining = .concatenate
    /// `Strip` after `Fuse`: scalar removed up to `stripStart` times at the start of the text
    /// and `stripStop` times at its end.
    var stripContent: UInt32 = 0x20
    var stripStart = 0
    var stripStop = 0
}

/// Streaming UTF-8 to text with `String::from_utf8_lossy` semantics (one U+FFFD per maximal
/// invalid subpart); an incomplete trailing sequence waits for more bytes.
struct LossyUTF8Stream: Sendable {
    private(set) var pending: [UInt8] = []

    /// Length of the valid sequence at `i`, or `-k` for an invalid maximal subpart of `k` bytes,
    /// or 0 when the bytes end inside a sequence that may still become valid.
    static func sequence(_ b: [UInt8], at i: Int) -> Int {
        let lead = b[i]
        if lead < 0x80 { return 1 }
        var need: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: need = 1
        case 0xE0: need = 2; low = 0xA0
        case 0xE1...0xEC, 0xEE, 0xEF: need = 2
        case 0xED: need = 2; high = 0x9F
        case 0xF0: need = 3; low = 0x90
        case 0xF1...0xF3: need = 3
        case 0xF4: need = 3; high = 0x8F
        default: return -1
        }
        var j = i + 1
        while need > 0 {
            if j >= b.count { return 0 }
            let c = b[j]
            if c < low || c > high { return -(j - i) }
            low = 0x80; high = 0xBF
            need -= 1
            j += 1
        }
        return j - i
    }

    /// Appends `bytes` and returns the newly complete text; `final` flushes an incomplete tail as U+FFFD.
    mutating func feed(_ bytes: [UInt8], final: Bool) -> String {
        pending.append(contentsOf: bytes)
        if let valid = String(validating: pending, as: UTF8.self) {
            pending.removeAll(keepingCapacity: true)
            return valid
        }
        var out: [UInt8] = []
        out.reserveCapacity(pending.count)
        var i = 0
        while i < pending.count {
            let length = Self.sequence(pending, at: i)
            if length > 0 {
                out.append(contentsOf: pending[i..<(i + length)])
                i += length
            } else if length < 0 {
                out.append(contentsOf: [0xEF, 0xBF, 0xBD])
                i += -length
            } else if final {
                out.append(contentsOf: [0xEF, 0xBF, 0xBD])
                i = pending.count
            } else {
                break
            }
        }
        pending.removeFirst(i)
        return String(decoding: out, as: UTF8.self)
    }
}

/// Streaming detokenizer: `append` returns only the text made complete by the new id, and
/// `finish` flushes the rest. The concatenation of all returned strings equals
/// `Tokenizer.decode` of all ids. Text may lag by a token where it cannot be final yet: an
/// incomplete UTF-8 character, a run of `<0xNN>` byte-fallback tokens (upstream turns the
/// whole run into U+FFFDs if any byte is invalid), or trailing characters `Strip` may remove.
public struct IncrementalDecoder: Sendable {
    private let tokenizer: Tokenizer
    private let skipSpecialTokens: Bool
    private var stream = LossyUTF8Stream()
    private var fallbackRun: [UInt8] = []
    private var emittedTokenCount = 0
    private var startStripLeft: Int
    private var startResolved = false
    private var heldTail: [Unicode.Scalar] = []

    public init(tokenizer: Tokenizer, skipSpecialTokens: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecialTokens = skipSpecialTokens
        self.startStripLeft = tokenizer.decoderPlan.stripStart
    }

    /// Adds one id; returns the text it completes (often "", never text already returned).
    public mutating func append(_ id: Int) throws -> String {
        guard id >= 0, id < tokenizer.vocabularySize, tokenizer.tokenExists[id] else {
            throw TokenizerError.idOutOfRange(id: id, vocabularySize: tokenizer.vocabularySize)
        }
        if skipSpecialTokens && tokenizer.isSpecial[id] { return "" }
        let fallback = tokenizer.fallbackByte[id]
        if fallback >= 0 {
            fallbackRun.append(UInt8(fallback))
            emittedTokenCount += 1
            return ""
        }
        var bytes = flushFallbackRun()
        if tokenizer.decoderPlan.joining == .space && emittedTokenCount > 0 { bytes.append(0x20) }
        let range = Int(tokenizer.decodeOffsets[id])..<Int(tokenizer.decodeOffsets[id + 1])
        bytes.append(contentsOf: tokenizer.decodeBytes[range])
        emittedTokenCount += 1
        return strip(stream.feed(bytes, final: false), final: false)
    }

    /// One-shot decode of a fresh decoder: gathers all bytes, then one UTF-8 pass and strip.
    mutating func decodeAll(_ ids: [Int]) throws -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        for id in ids {
            guard id >= 0, id < tokenizer.vocabularySize, tokenizer.tokenExists[id] else {
                throw TokenizerError.idOutOfRange(id: id, vocabularySize: tokenizer.vocabularySize)
            }
            if skipSpecialTokens && tokenizer.isSpecial[id] { continue }
            let fallback = tokenizer.fallbackByte[id]
            if fallback >= 0 {
                fallbackRun.append(UInt8(fallback))
                emittedTokenCount += 1
                continue
            }
            if !fallbackRun.isEmpty { bytes.append(contentsOf: flushFallbackRun()) }
            if tokenizer.decoderPlan.joining == .space && emittedTokenCount > 0 { bytes.append(0x20) }
            bytes.append(contentsOf: tokenizer.decodeBytes[Int(tokenizer.decodeOffsets[id])..<Int(tokenizer.decodeOffsets[id + 1])])
            emittedTokenCount += 1
        }
        bytes.append(contentsOf: flushFallbackRun())
        return strip(stream.feed(bytes, final: true), final: true)
    }

    /// Flushes text held back: an incomplete UTF-8 tail becomes U+FFFD, as a one-shot decode shows it.
    public mutating func finish() -> String {
        let bytes = flushFallbackRun()
        return strip(stream.feed(bytes, final: true), final: true)
    }

    /// `ByteFallback`: a run of byte tokens decodes as UTF-8 if valid, else one U+FFFD per byte.
    private mutating func flushFallbackRun() -> [UInt8] {
        if fallbackRun.isEmpty { return [] }
        defer { fallbackRun.removeAll(keepingCapacity: true) }
        if String(validating: fallbackRun, as: UTF8.self) != nil { return fallbackRun }
        return Array(repeating: [0xEF, 0xBF, 0xBD] as [UInt8], count: fallbackRun.count).flatMap { $0 }
    }

    private mutating func strip(_ text: String, final: Bool) -> String {
        let plan = tokenizer.decoderPlan
        if plan.stripStart == 0 && plan.stripStop == 0 { return text }
        var scalars = Array(text.unicodeScalars)
        if !startResolved && !scalars.isEmpty {
            var cut = 0
            while cut < scalars.count && startStripLeft > 0 && scalars[cut].value == plan.stripContent {
                cut += 1
                startStripLeft -= 1
            }
            scalars.removeFirst(cut)
            // The start is settled once a non-stripped scalar is seen or the budget is spent.
            if !scalars.isEmpty || startStripLeft == 0 { startResolved = true }
        }
        if plan.stripStop > 0 {
            scalars = heldTail + scalars
            heldTail = []
            var keep = scalars.count
            while keep > 0 && scalars.count - keep < plan.stripStop && scalars[keep - 1].value == plan.stripContent {
                keep -= 1
            }
            if !final { heldTail = Array(scalars[keep...]) }
            scalars.removeLast(scalars.count - keep)
        }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars)
        return String(out)
    }
}
