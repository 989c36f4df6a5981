/// A radix tree over token ids whose nodes own the KV blocks of their tokens (SGLang's RadixCache,
/// over refcounted blocks): `match` finds the longest cached prefix of a prompt, `insert` adds a
/// computed sequence, `evict` frees least recently used leaves under memory pressure.
///
/// Matching is token-granular while blocks hold `blockTokenCount` positions aligned to absolute
/// positions. A node covering positions `[start, end)` holds the blocks of indices
/// `start / C ... (end - 1) / C`; when `start` falls inside a block, that first block is the node's
/// own copy (its parent's tail positions plus its own). Blocks held by the cache are never written:
/// a sequence that continues from a cached prefix ending inside a block gets a copy of that block
/// (`KVCache.createSequence(prefix:length:)`), and splitting a node inside a block copies it too.
/// Each block is held by at most one node, so a node is in use exactly when a sequence holds one
/// of its blocks (refcount above 1); only leaves nobody uses are evicted.
public final class PrefixCache: @unchecked Sendable {
    final class Node {
        /// Tokens after the parent's.
        var tokens: [Int]
        /// Absolute position of `tokens[0]`.
        var start: Int
        /// Blocks of indices `start / C ... (end - 1) / C`.
        var blocks: [BlockID]
        weak var parent: Node?
        /// Children by their first token (radix invariant: distinct first tokens).
        var children: [Int: Node] = [:]
        var lastUse: UInt64 = 0

        init(tokens: [Int], start: Int, blocks: [BlockID], parent: Node?) {
            self.tokens = tokens; self.start = start; self.blocks = blocks; self.parent = parent
        }
        var end: Int { start + tokens.count }
    }

    /// The longest cached prefix of some tokens, as a block table.
    public struct Match: Sendable {
        /// Cached positions `0..<length`.
        public var length: Int
        /// Blocks of indices `0 ... (length - 1) / C` (empty when `length == 0`); the last one may
        /// hold more than `length`'s positions and is not to be written.
        public var blocks: [BlockID]
        public init(length: Int, blocks: [BlockID]) { self.length = length; self.blocks = blocks }
    }

    public let pool: KVBlockPool
    private let root = Node(tokens: [], start: 0, blocks: [], parent: nil)
    private var clock: UInt64 = 0
    /// Blocks held by the cache (one reference each).
    public private(set) var blockCount = 0
    public private(set) var nodeCount = 0

    public init(pool: KVBlockPool) { self.pool = pool }

    private var C: Int { pool.layout.blockTokenCount }

    /// The longest cached prefix of `tokens`, at most `limit` tokens; marks the path as recently used.
    public func match(_ tokens: [Int], limit: Int? = nil) -> Match {
        let limit = min(limit ?? tokens.count, tokens.count)
        clock += 1
        var node = root
        var length = 0
        var table: [BlockID] = []
        while length < limit, let child = node.children[tokens[length]] {
            var common = 0
            while common < child.tokens.count && length + common < limit && child.tokens[common] == tokens[length + common] {
                common += 1
            }
            child.lastUse = clock
            // The child's first block replaces the parent's partial last block at the same index.
            let firstIndex = child.start / C
            table.removeLast(table.count - firstIndex)
            let end = length + common
            table.append(contentsOf: child.blocks.prefix((end - 1) / C - firstIndex + 1))
            length = end
            if common < child.tokens.count { break }
            node = child
        }
        return Match(length: length, blocks: table)
    }

    /// Adds the KV of `tokens` held by a sequence with block table `blocks` (covering every position
    /// of `tokens`). Positions already cached are left as they are; new ones take a reference to the
    /// sequence's blocks, which the sequence must not write again at those positions (the caller
    /// detaches a partial last block it goes on writing). Returns false when a split could not get
    /// the block it copies (the pool is full); the cache is unchanged then.
    @discardableResult
    public func insert(_ tokens: [Int], blocks: [BlockID]) -> Bool {
        precondition(blocks.count >= (tokens.count + C - 1) / C, "insert: the block table does not cover the tokens")
        clock += 1
        var node = root
        var length = 0
        while length < tokens.count {
            guard let child = node.children[tokens[length]] else {
                // New leaf for the rest; its first block is the sequence's own (a copy of the
                // parent's tail when it starts inside a block).
                let firstIndex = length / C, lastIndex = (tokens.count - 1) / C
                let own = Array(blocks[firstIndex...lastIndex])
                for b in own { pool.retain(b) }
                let leaf = Node(tokens: Array(tokens[length...]), start: length, blocks: own, parent: node)
                leaf.lastUse = clock
                node.children[tokens[length]] = leaf
                blockCount += own.count
                nodeCount += 1
                return true
            }
            var common = 0
            while common < child.tokens.count && length + common < tokens.count && child.tokens[common] == tokens[length + common] {
                common += 1
            }
            child.lastUse = clock
            if common < child.tokens.count {
                guard split(child, at: common) else { return false }
            }
            length += common
            node = child
        }
        return true
    }

    /// Cuts `node` after `count` tokens: `node` keeps the head, a new child the tail with the old
    /// children. A block straddling the cut goes to the head; the tail gets a copy of it.
    private func split(_ node: Node, at count: Int) -> Bool {
        let cut = node.start + count
        let firstIndex = node.start / C
        let headLast = (cut - 1) / C
        var tailBlocks = Array(node.blocks[(cut / C - firstIndex)...])
        if cut % C != 0 {
            guard let copy = try? pool.allocate(1) else { return false }
            pool.copy(tailBlocks[0], to: copy[0])
            tailBlocks[0] = copy[0]
            blockCount += 1
        }
        let tail = Node(tokens: Array(node.tokens[count...]), start: cut, blocks: tailBlocks, parent: node)
        tail.children = node.children
        tail.lastUse = node.lastUse
        for c in tail.children.values { c.parent = tail }
        node.tokens.removeLast(node.tokens.count - count)
        node.blocks.removeLast(node.blocks.count - (headLast - firstIndex + 1))
        node.children = [tail.tokens[0]: tail]
        nodeCount += 1
        return true
    }

    private func inUse(_ node: Node) -> Bool { node.blocks.contains { pool.refCount($0) > 1 } }

    /// Blocks eviction could free now (every node no sequence uses, leaves up).
    public var evictableBlockCount: Int {
        func count(_ n: Node) -> (blocks: Int, whole: Bool) {
            var total = 0, whole = true
            for c in n.children.values {
                let r = count(c)
                total += r.blocks
                whole = whole && r.whole
            }
            guard n !== root, whole, !inUse(n) else { return (total, false) }
            return (total + n.blocks.count, true)
        }
        return count(root).blocks
    }

    /// Evicts least recently used leaves that no sequence uses until `blocks` blocks went back to
    /// the pool or nothing more can go. Returns the blocks freed.
    @discardableResult
    public func evict(_ blocks: Int) -> Int {
        var freed = 0
        var leaves: [Node] = []
        func collect(_ n: Node) {
            if n.children.isEmpty { if n !== root && !inUse(n) { leaves.append(n) } } else { n.children.values.forEach(collect) }
        }
        collect(root)
        while freed < blocks, !leaves.isEmpty {
            // Oldest first; a parent left childless joins the candidates.
            let i = leaves.indices.min { leaves[$0].lastUse < leaves[$1].lastUse }!
            let leaf = leaves.remove(at: i)
            freed += remove(leaf)
            if let p = leaf.parent, p !== root, p.children.isEmpty, !inUse(p) { leaves.append(p) }
        }
        return freed
    }

    private func remove(_ leaf: Node) -> Int {
        for b in leaf.blocks { pool.release(b) }
        leaf.parent?.children.removeValue(forKey: leaf.tokens[0])
        blockCount -= leaf.blocks.count
        nodeCount -= 1
        return leaf.blocks.count
    }

    /// Drops every node (releasing the cache's references).
    public func clear() {
        func drop(_ n: Node) {
            for c in n.children.values { drop(c) }
            for b in n.blocks { pool.release(b) }
            n.children = [:]
        }
        drop(root)
        blockCount = 0
        nodeCount = 0
    }

    /// Total cached tokens (each shared run counted once).
    public var tokenCount: Int {
        func count(_ n: Node) -> Int { n.tokens.count + n.children.values.reduce(0) { $0 + count($1) } }
        return count(root)
    }
}
