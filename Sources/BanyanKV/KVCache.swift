import BanyanKernels

/// Identity of a live sequence in a `KVCache`.
public struct SequenceID: Hashable, Sendable, Comparable {
    public let raw: Int
    public init(_ raw: Int) { self.raw = raw }
    public static func < (a: SequenceID, b: SequenceID) -> Bool { a.raw < b.raw }
}

/// The sequences' block tables over a shared `KVBlockPool`. A sequence's KV for position `p` lives in
/// `blocks[p / blockTokenCount]` at slot `p % blockTokenCount`. Forking shares every full block (stored
/// once, refcounted) and copies only the partial last block, so a shared block is always full and
/// never written again: decoding appends only to blocks its sequence owns alone.
public final class KVCache: @unchecked Sendable {
    public let pool: KVBlockPool
    public private(set) var tables: [SequenceID: [BlockID]] = [:]
    public private(set) var lengths: [SequenceID: Int] = [:]
    private var nextID = 0

    public init(pool: KVBlockPool) { self.pool = pool }

    public var layout: KVLayout { pool.layout }

    /// A new, empty sequence.
    public func createSequence() -> SequenceID {
        let id = SequenceID(nextID)
        nextID += 1
        tables[id] = []
        lengths[id] = 0
        return id
    }

    public func blocks(_ s: SequenceID) -> [BlockID] { tables[s] ?? [] }
    public func length(_ s: SequenceID) -> Int { lengths[s] ?? 0 }

    /// Makes room for `count` more tokens of `s` (allocating blocks as needed) and returns the first new
    /// position. Throws `KVError.outOfMemory` without changing anything if the pool cannot hold them.
    public func append(_ s: SequenceID, count: Int) throws -> Int {
        let start = lengths[s]!
        let c = layout.blockTokenCount
        let needed = (start + count + c - 1) / c - tables[s]!.count
        if needed > 0 { tables[s]!.append(contentsOf: try pool.allocate(needed)) }
        lengths[s] = start + count
        return start
    }

    /// Drops the last `count` positions of `s` (undoing an `append` whose step failed).
    public func truncate(_ s: SequenceID, to length: Int) {
        let c = layout.blockTokenCount
        let keep = (length + c - 1) / c
        while tables[s]!.count > keep { pool.release(tables[s]!.removeLast()) }
        lengths[s] = length
    }

    /// A new sequence holding positions `0..<length` of `blocks` (a `PrefixCache` match): full blocks
    /// are shared; a last block only partly inside `length` is copied, since the new sequence writes
    /// its next positions there. Throws (taking nothing) when the copy does not fit.
    public func createSequence(prefix blocks: [BlockID], length: Int) throws -> SequenceID {
        let c = layout.blockTokenCount
        precondition(blocks.count == (length + c - 1) / c, "prefix blocks do not match the length")
        let partial = length % c != 0
        let copy = partial ? try pool.allocate(1) : []
        let id = createSequence()
        var table = blocks
        for b in blocks.dropLast(partial ? 1 : 0) { pool.retain(b) }
        if partial {
            pool.copy(blocks.last!, to: copy[0])
            table[table.count - 1] = copy[0]
        }
        tables[id] = table
        lengths[id] = length
        return id
    }

    /// Makes `s`'s partial last block its own (copying it when another holder, e.g. a prefix cache,
    /// shares it), so that writing `s`'s next positions never touches a block others read.
    public func detachTail(_ s: SequenceID) throws {
        guard lengths[s]! % layout.blockTokenCount != 0, let last = tables[s]!.last, pool.refCount(last) > 1 else { return }
        let copy = try pool.allocate(1)[0]
        pool.copy(last, to: copy)
        pool.release(last)
        tables[s]![tables[s]!.count - 1] = copy
    }

    /// A new sequence with the same KV as `s`: full blocks shared, the partial last block copied.
    public func fork(_ s: SequenceID) throws -> SequenceID {
        try createSequence(prefix: tables[s]!, length: lengths[s]!)
    }

    /// Releases `s`'s references to its blocks.
    public func free(_ s: SequenceID) {
        guard let table = tables.removeValue(forKey: s) else { return }
        lengths.removeValue(forKey: s)
        for b in table { pool.release(b) }
    }
}
