/// Open-addressing hash table from a token-id pair `(left << 32 | right)` to a merge
/// `(rank << 32 | newID)`. Built once at load; a Swift `Dictionary` costs noticeably more per
/// lookup in the merge loop.
struct MergeTable: Sendable {
    private(set) var keys: [UInt64]
    private(set) var values: [UInt64]
    let shift: UInt64
    let mask: Int
    static let empty = UInt64.max

    init(minimumCapacity: Int) {
        var bits = 4
        while (1 << bits) < minimumCapacity * 2 { bits += 1 }
        keys = [UInt64](repeating: Self.empty, count: 1 << bits)
        values = [UInt64](repeating: 0, count: 1 << bits)
        shift = UInt64(64 - bits)
        mask = (1 << bits) - 1
    }

    @inline(__always)
    static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    static func slot(_ key: UInt64, shift: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// Inserts or overwrites: a repeated merge keeps the later rank, as `tokenizers`' HashMap does.
    mutating func insert(_ key: UInt64, rank: Int, newID: Int32) {
        var i = slot(key)
        while keys[i] != Self.empty && keys[i] != key { i = (i + 1) & mask }
        keys[i] = key
        values[i] = UInt64(rank) << 32 | UInt64(UInt32(bitPattern: newID))
    }

    @inline(__always)
    func lookup(_ key: UInt64) -> UInt64? {
        var i = slot(key)
        while true {
            let k = keys[i]
            if k == key { return values[i] }
            if k == Self.empty { return nil }
            i = (i + 1) & mask
        }
    }
}

/// The BPE model of `tokenizer.json` (`model.type == "BPE"`): merges by rank over the scalars
/// of one pre-tokenized word, with optional byte fallback and unknown token.
struct BPEModel: Sendable {
    /// Token string (UTF-8 bytes, compared exactly) → id for the model vocab.
    let vocab: TokenTable
    /// id → token string; "" where the vocab has no such id.
    let idToToken: [String]
    /// Single-scalar tokens below U+10000, by scalar; -1 when absent. The hot path of building
    /// a word's first symbols, which would otherwise hash a one-character String per scalar.
    let bmpScalarID: [Int32]
    let astralScalarID: [UInt32: Int32]
    let merges: MergeTable
    /// `<0xNN>` ids when `byte_fallback` is set.
    let byteFallbackIDs: [Int32]?
    let unknownID: Int32?
    let fuseUnknown: Bool
    let ignoreMerges: Bool

    /// Words longer than this are not cached: long words are rare and would bloat the cache.
    static let cachedWordLength = 64

    @inline(__always)
    private func scalarID(_ v: UInt32) -> Int32 {
        if v < 0x10000 { return bmpScalarID[Int(v)] }
        return astralScalarID[v] ?? -1
    }

    /// Appends the ids of one word (already normalized / byte-mapped scalars).
    func encodeWord(_ word: [UInt32], cache: inout [[UInt32]: [Int32]], into ids: inout [Int32]) {
        if word.isEmpty { return }
        let cacheable = word.count <= Self.cachedWordLength
        if cacheable, let hit = cache[word] { ids.append(contentsOf: hit); return }
        var result: [Int32] = []
        if ignoreMerges, let id = vocab.lookup(Self.utf8(word)) {
            result = [id]
        } else {
            mergeWord(word, into: &result)
        }
        if cacheable { cache[word] = result }
        ids.append(contentsOf: result)
    }

    static func utf8(_ scalars: [UInt32]) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(scalars.count)
        for v in scalars { bytes.append(contentsOf: Unicode.Scalar(v)!.utf8) }
        return bytes
    }

    /// `Word::merge_all` from `tokenizers`: a heap of candidate merges keyed by (rank, position);
    /// stale entries are detected by re-looking up the pair, exactly as upstream does, so ties and
    /// stale-entry quirks produce the same ids. O(n log n) in the word length.
    private func mergeWord(_ word: [UInt32], into out: inout [Int32]) {
        var symbols: [Int32] = []
        symbols.reserveCapacity(word.count)
        var pendingUnknown = false
        for v in word {
            let id = scalarID(v)
            if id >= 0 {
                if pendingUnknown, let unk = unknownID { symbols.append(unk); pendingUnknown = false }
                symbols.append(id)
                continue
            }
            if let fallback = byteFallbackIDs {
                let bytes = Unicode.Scalar(v)!.utf8
                if bytes.allSatisfy({ fallback[Int($0)] >= 0 }) {
                    for b in bytes { symbols.append(fallback[Int(b)]) }
                    continue
                }
            }
            if let unk = unknownID {
                if pendingUnknown && !fuseUnknown { symbols.append(unk) }
                pendingUnknown = true
            }
        }
        if pendingUnknown, let unk = unknownID { symbols.append(unk) }

        let n = symbols.count
        if n < 2 { out.append(contentsOf: symbols); return }
        merges.keys.withUnsafeBufferPointer { keys in
            merges.values.withUnsafeBufferPointer { values in
                symbols.withUnsafeMutableBufferPointer { symbols in
                    Self.mergeAll(symbols, keys: keys, values: values, shift: merges.shift, mask: merges.mask)
                }
            }
        }
        for s in symbols where s >= 0 { out.append(s) }
    }

    /// The merge loop over raw buffers: words can be a whole 1 MB text (Llama 2 has no
    /// pre-tokenizer; a run of CJK letters is one word), so bounds checks and ARC matter here.
    /// Heap entries are (rank << 32 | position, newID), a min-heap on the first field.
    private static func mergeAll(_ symbols: UnsafeMutableBufferPointer<Int32>, keys: UnsafeBufferPointer<UInt64>,
                                 values: UnsafeBufferPointer<UInt64>, shift: UInt64, mask: Int) {
        let n = symbols.count
        @inline(__always) func lookup(_ left: Int32, _ right: Int32) -> UInt64? {
            let key = MergeTable.key(left, right)
            var i = MergeTable.slot(key, shift: shift)
            while true {
                let k = keys[i]
                if k == key { return values[i] }
                if k == MergeTable.empty { return nil }
                i = (i + 1) & mask
            }
        }
        let next = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        let prev = UnsafeMutablePointer<Int32>.allocate(capacity: n)
        // Each merge pushes at most two entries, and there are fewer than n merges.
        let capacity = 3 * n + 1
        let heapKeys = UnsafeMutablePointer<UInt64>.allocate(capacity: capacity)
        let heapIDs = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        defer { next.deallocate(); prev.deallocate(); heapKeys.deallocate(); heapIDs.deallocate() }
        for i in 0..<n {
            next[i] = i + 1 < n ? Int32(i + 1) : -1
            prev[i] = Int32(i - 1)
        }
        var count = 0

        @inline(__always) func siftDown(_ start: Int) {
            let key = heapKeys[start], id = heapIDs[start]
            var i = start
            while true {
                var child = 2 * i + 1
                if child >= count { break }
                if child + 1 < count && heapKeys[child + 1] < heapKeys[child] { child += 1 }
                if heapKeys[child] >= key { break }
                heapKeys[i] = heapKeys[child]; heapIDs[i] = heapIDs[child]
                i = child
            }
            heapKeys[i] = key; heapIDs[i] = id
        }
        @inline(__always) func push(_ key: UInt64, _ id: Int32) {
            var i = count
            count += 1
            while i > 0 {
                let parent = (i - 1) >> 1
                if heapKeys[parent] <= key { break }
                heapKeys[i] = heapKeys[parent]; heapIDs[i] = heapIDs[parent]
                i = parent
            }
            heapKeys[i] = key; heapIDs[i] = id
        }

        for i in 0..<(n - 1) {
            if let m = lookup(symbols[i], symbols[i + 1]) {
                heapKeys[count] = (m >> 32) << 32 | UInt64(i)
                heapIDs[count] = Int32(truncatingIfNeeded: m)
                count += 1
            }
        }
        if count > 1 {
            var i = count / 2 - 1
            while i >= 0 { siftDown(i); i -= 1 }
        }
        while count > 0 {
            let topKey = heapKeys[0], topID = heapIDs[0]
            count -= 1
            if count > 0 {
                heapKeys[0] = heapKeys[count]; heapIDs[0] = heapIDs[count]
                siftDown(0)
            }
            let pos = Int(topKey & 0xFFFF_FFFF)
            let right = next[pos]
            if symbols[pos] < 0 || right < 0 { continue }
            let r = Int(right)
            guard let current = lookup(symbols[pos], symbols[r]),
                  Int32(truncatingIfNeeded: current) == topID else { continue }
            symbols[pos] = topID
            symbols[r] = -1
            let after = next[r]
            next[pos] = after
            if after >= 0 { prev[Int(after)] = Int32(pos) }
            let before = prev[pos]
            if before >= 0, let m = lookup(symbols[Int(before)], topID) {
                push((m >> 32) << 32 | UInt64(before), Int32(truncatingIfNeeded: m))
            }
            if after >= 0, let m = lookup(topID, symbols[Int(after)]) {
                push((m >> 32) << 32 | UInt64(pos), Int32(truncatingIfNeeded: m))
            }
        }
    }
}
