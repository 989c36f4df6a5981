/// An LRU cache of computed full KV blocks keyed by their token content and everything before them
/// (the prefix caching of streaming servers such as vLLM): a new prompt reuses the longest chain of
/// cached blocks. Cached blocks hold one reference each; only blocks nobody else uses are evicted,
/// leaves first, least recently used first.
public final class BlockCache: @unchecked Sendable {
    struct Key: Hashable { let parent: Int; let tokens: [Int] }
    struct Entry { let key: Key; let block: BlockID; var lastUse: Int; var children: Int }

    let pool: KVBlockPool
    private var index: [Key: Int] = [:]
    private var entries: [Int: Entry] = [:]
    private var nextID = 0
    private var clock = 0

    public init(pool: KVBlockPool) { self.pool = pool }

    public var count: Int { entries.count }

    /// The cached blocks covering the longest block-aligned prefix of `tokens` (not retained).
    public func lookup(_ tokens: [Int]) -> [BlockID] {
        let c = pool.layout.blockTokenCount
        var parent = -1
        var out: [BlockID] = []
        clock += 1
        for b in 0..<(tokens.count / c) {
            guard let id = index[Key(parent: parent, tokens: Array(tokens[(b * c)..<((b + 1) * c)]))] else { break }
            entries[id]!.lastUse = clock
            out.append(entries[id]!.block)
            parent = id
        }
        return out
    }

    /// Caches the full blocks of a sequence holding `tokens` (`blocks` is its block table).
    public func insert(_ tokens: [Int], blocks: [BlockID]) {
        let c = pool.layout.blockTokenCount
        var parent = -1
        clock += 1
        for b in 0..<min(tokens.count / c, blocks.count) {
            let key = Key(parent: parent, tokens: Array(tokens[(b * c)..<((b + 1) * c)]))
            if let id = index[key] {
                entries[id]!.lastUse = clock
                parent = id
                continue
            }
            let id = nextID
            nextID += 1
            pool.retain(blocks[b])
            index[key] = id
            entries[id] = Entry(key: key, block: blocks[b], lastUse: clock, children: 0)
            if parent >= 0 { entries[parent]!.children += 1 }
            parent = id
        }
    }

    /// Blocks that eviction could return to the pool now.
    public var evictableCount: Int { entries.values.filter { pool.refCount($0.block) == 1 }.count }

    /// Evicts least recently used unshared leaf entries until `count` blocks were freed or none is left.
    @discardableResult
    public func evict(_ count: Int) -> Int {
        var freed = 0
        while freed < count {
            guard let (id, e) = entries.filter({ $0.value.children == 0 && pool.refCount($0.value.block) == 1 })
                .min(by: { $0.value.lastUse < $1.value.lastUse }) else { break }
            entries.removeValue(forKey: id)
            index.removeValue(forKey: e.key)
            if e.key.parent >= 0 { entries[e.key.parent]!.children -= 1 }
            pool.release(e.block)
            freed += 1
        }
        return freed
    }

    /// Drops every entry (releasing the cache's references).
    public func clear() {
        for e in entries.values { pool.release(e.block) }
        entries = [:]
        index = [:]
    }
}
