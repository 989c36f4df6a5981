import Testing
import BanyanKernels
import BanyanKV
import BanyanTestSupport

/// Sequences whose KV slots hold a marker of (token, position), so a block table can be checked by
/// reading back what every position should hold.
struct MarkedSequences {
    let kv: KVCache
    var C: Int { kv.layout.blockTokenCount }

    init(blocks: Int) throws {
        let layout = KVLayout(layerCount: 1, kvHeadCount: 1, headDim: 1, blockTokenCount: 4, dtype: .f32)
        kv = KVCache(pool: try KVBlockPool(layout: layout, budgetBytes: blocks * layout.blockByteCount))
    }

    static func marker(_ token: Int, _ position: Int) -> Float { Float(token * 1000 + position) }

    /// Writes markers of `tokens[from...]` into `s` (which holds `from` positions already).
    func write(_ s: SequenceID, _ tokens: [Int], from: Int) throws {
        let start = try kv.append(s, count: tokens.count - from)
        #expect(start == from)
        let table = kv.blocks(s)
        for p in from..<tokens.count {
            var k = Self.marker(tokens[p], p), v = -k
            kv.pool.store(key: &k, value: &v, block: table[p / C], slot: p % C, layer: 0, kvHead: 0)
        }
    }

    /// Whether `table` holds the markers of `tokens[0..<length]`.
    func holds(_ table: [BlockID], _ tokens: [Int], length: Int) -> Bool {
        (0..<length).allSatisfy { p in
            kv.pool.storedKey(table[p / C], layer: 0, kvHead: 0, slot: p % C, dim: 0) == Self.marker(tokens[p], p)
                && kv.pool.storedValue(table[p / C], layer: 0, kvHead: 0, slot: p % C, dim: 0) == -Self.marker(tokens[p], p)
        }
    }
}

@Suite("Prefix cache")
struct PrefixCacheTests {
    /// Prompts from a small alphabet, so they share prefixes of every length, in and out of blocks.
    func prompts(_ rng: inout SeededRNG, count: Int) -> [[Int]] {
        let stems = (0..<4).map { _ in (0..<Int.random(in: 1...14, using: &rng)).map { _ in Int.random(in: 1...3, using: &rng) } }
        return (0..<count).map { _ in
            stems[Int.random(in: 0..<stems.count, using: &rng)] + (0..<Int.random(in: 0...9, using: &rng)).map { _ in Int.random(in: 1...3, using: &rng) }
        }
    }

    @Test("match returns the longest inserted prefix, and its blocks hold exactly that KV", arguments: [1, 2, 3, 4])
    func matchAgainstReference(seed: UInt64) throws {
        print("seed \(seed)")
        var rng = SeededRNG(seed: seed)
        let m = try MarkedSequences(blocks: 4096)
        let cache = PrefixCache(pool: m.kv.pool)
        var inserted: [[Int]] = []
        for tokens in prompts(&rng, count: 60) {
            // Reference: the longest common prefix with anything inserted so far.
            let expected = inserted.map { commonPrefix($0, tokens) }.max() ?? 0
            let match = cache.match(tokens)
            #expect(match.length == expected)
            #expect(m.holds(match.blocks, tokens, length: match.length))
            let limited = cache.match(tokens, limit: tokens.count - 1)
            #expect(limited.length == min(expected, tokens.count - 1))
            // Continue from the match as the scheduler does (partial block copied), then insert.
            let s = try m.kv.createSequence(prefix: match.blocks, length: match.length)
            try m.write(s, tokens, from: match.length)
            #expect(m.holds(m.kv.blocks(s), tokens, length: tokens.count))
            #expect(cache.insert(tokens, blocks: m.kv.blocks(s)))
            m.kv.free(s)
            inserted.append(tokens)
            // Everything inserted is still found, with the right KV.
            for t in inserted {
                let again = cache.match(t)
                #expect(again.length == t.count)
                #expect(m.holds(again.blocks, t, length: t.count))
            }
        }
        #expect(m.kv.pool.usedCount == cache.blockCount, "only the cache holds blocks")
        cache.clear()
        #expect(m.kv.pool.usedCount == 0)
    }

    @Test("eviction frees least recently used leaves nobody uses, never a block in use")
    func eviction() throws {
        var rng = SeededRNG(seed: 9)
        let m = try MarkedSequences(blocks: 4096)
        let cache = PrefixCache(pool: m.kv.pool)
        let all = prompts(&rng, count: 30)
        for t in all {
            let s = m.kv.createSequence()
            try m.write(s, t, from: 0)
            cache.insert(t, blocks: m.kv.blocks(s))
            m.kv.free(s)
        }
        // A running sequence holds the blocks of one prompt's match: those must survive any eviction.
        let held = all[7]
        let match = cache.match(held)
        let running = try m.kv.createSequence(prefix: match.blocks, length: match.length)
        let evictable = cache.evictableBlockCount
        let freed = cache.evict(1 << 20)
        #expect(freed == evictable)
        #expect(m.holds(m.kv.blocks(running), held, length: held.count))
        // What the running sequence shares is all that stays.
        let kept = cache.match(held)
        #expect(kept.length >= (held.count / m.C) * m.C)
        m.kv.free(running)
        cache.evict(1 << 20)
        #expect(cache.blockCount == 0)
        #expect(m.kv.pool.usedCount == 0)
    }

    @Test("recently used prefixes outlive older ones")
    func lru() throws {
        let m = try MarkedSequences(blocks: 64)
        let cache = PrefixCache(pool: m.kv.pool)
        let a = [1, 1, 1, 1, 1, 1, 1, 1], b = [2, 2, 2, 2, 2, 2, 2, 2]
        for t in [a, b] {
            let s = m.kv.createSequence()
            try m.write(s, t, from: 0)
            cache.insert(t, blocks: m.kv.blocks(s))
            m.kv.free(s)
        }
        _ = cache.match(a)  // a is now the more recent
        cache.evict(2)
        #expect(cache.match(a).length == 8)
        #expect(cache.match(b).length == 0)
    }
}

func commonPrefix(_ a: [Int], _ b: [Int]) -> Int {
    var i = 0
    while i < min(a.count, b.count) && a[i] == b[i] { i += 1 }
    return i
}
