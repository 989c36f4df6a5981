/// Exact byte-string → id hash table over one flat buffer. Swift `String` keys would compare
/// by canonical equivalence (merging distinct tokens such as U+1F77 and U+03AF, both "ί", in
/// Llama 2's vocab), and `[UInt8]` keys cost an allocation per lookup while loading 280k merges.
struct TokenTable: Sendable {
    private var storage: [UInt8] = []
    private var starts: [Int32] = []
    private var lengths: [Int32] = []
    private var ids: [Int32] = []
    private var slots: [Int32]
    private let mask: Int

    init(minimumCapacity: Int) {
        var size = 16
        while size < minimumCapacity * 2 { size <<= 1 }
        slots = [Int32](repeating: -1, count: size)
        mask = size - 1
    }

    var count: Int { ids.count }

    @inline(__always)
    private static func hash(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    private func find(_ bytes: UnsafeBufferPointer<UInt8>) -> (slot: Int, entry: Int32) {
        var i = Self.hash(bytes) & mask
        while true {
            let entry = slots[i]
            if entry < 0 { return (i, -1) }
            let start = Int(starts[Int(entry)]), length = Int(lengths[Int(entry)])
            if length == bytes.count && storage.withUnsafeBufferPointer({ s in
                (0..<length).allSatisfy { s[start + $0] == bytes[$0] }
            }) {
                return (i, entry)
            }
            i = (i + 1) & mask
        }
    }

    /// Inserts or overwrites (a later duplicate key wins, as with serde maps).
    mutating func insert(_ bytes: UnsafeBufferPointer<UInt8>, id: Int32) {
        let (slot, entry) = find(bytes)
        if entry >= 0 { ids[Int(entry)] = id; return }
        slots[slot] = Int32(ids.count)
        starts.append(Int32(storage.count))
        lengths.append(Int32(bytes.count))
        ids.append(id)
        storage.append(contentsOf: bytes)
    }

    mutating func insert(_ string: String, id: Int32) {
        var s = string
        s.withUTF8 { insert($0, id: id) }
    }

    func lookup(_ bytes: UnsafeBufferPointer<UInt8>) -> Int32? {
        let entry = find(bytes).entry
        return entry >= 0 ? ids[Int(entry)] : nil
    }

    func lookup(_ bytes: [UInt8]) -> Int32? { bytes.withUnsafeBufferPointer { lookup($0) } }

    func lookup(_ string: String) -> Int32? {
        var s = string
        return s.withUTF8 { lookup($0) }
    }
}
