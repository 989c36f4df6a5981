import BanyanKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Index of one KV block in a `KVBlockPool`.
public struct BlockID: Hashable, Sendable, Comparable {
    public let raw: Int32
    public init(_ raw: Int32) { self.raw = raw }
    public static func < (a: BlockID, b: BlockID) -> Bool { a.raw < b.raw }
}

/// Shape of one KV block: `blockTokenCount` consecutive positions of one sequence, for every layer.
/// Per layer and KV head, keys are stored transposed `[headDim, blockTokenCount]` (so a query's scores
/// against the block are one vector FMA per head dimension) and values `[blockTokenCount, headDim]`.
public struct KVLayout: Sendable, Equatable {
    public let layerCount: Int
    public let kvHeadCount: Int
    public let headDim: Int
    public let blockTokenCount: Int

    public init(layerCount: Int, kvHeadCount: Int, headDim: Int, blockTokenCount: Int = 32) {
        self.layerCount = layerCount; self.kvHeadCount = kvHeadCount
        self.headDim = headDim; self.blockTokenCount = blockTokenCount
    }
    /// Floats in one head's K (or V) tile of a block.
    public var tileFloatCount: Int { headDim * blockTokenCount }
    public var blockFloatCount: Int { layerCount * 2 * kvHeadCount * tileFloatCount }
    public var blockByteCount: Int { blockFloatCount * MemoryLayout<Float>.size }
    /// KV bytes one token occupies (all layers, K and V).
    public var bytesPerToken: Int { layerCount * 2 * kvHeadCount * headDim * MemoryLayout<Float>.size }
}

/// Errors of the KV cache; the budget one tells the caller how much was needed.
public enum KVError: BanyanError {
    case outOfMemory(neededBlocks: Int, freeBlocks: Int, budgetBytes: Int)
    case invalidBudget(Int, blockBytes: Int)

    public var description: String {
        switch self {
        case let .outOfMemory(needed, free, budget):
            return "KV cache memory exhausted: needed \(needed) more block(s), \(free) free within the budget of \(budget) bytes (raise --max-kv-bytes or lower --n / --max-tokens)"
        case let .invalidBudget(b, blockBytes):
            return "KV budget of \(b) bytes is smaller than one KV block (\(blockBytes) bytes)"
        }
    }
}

/// A fixed-capacity pool of reference-counted KV blocks carved from one lazily committed mapping
/// (pages are touched only when a block is first written). A block shared by several sequences is
/// stored once; its refcount says how many block tables (and caches) hold it.
public final class KVBlockPool: @unchecked Sendable {
    public let layout: KVLayout
    public let capacity: Int
    public let budgetBytes: Int
    private let storage: UnsafeMutablePointer<Float>
    private var refCounts: [Int32]
    private var freeList: [Int32]
    /// Blocks in use now, and the most ever in use at once (for `usage.kv_bytes`).
    public private(set) var usedCount = 0
    public private(set) var peakUsedCount = 0

    public init(layout: KVLayout, budgetBytes: Int) throws {
        let cap = budgetBytes / layout.blockByteCount
        guard cap >= 1 else { throw KVError.invalidBudget(budgetBytes, blockBytes: layout.blockByteCount) }
        self.layout = layout
        self.capacity = cap
        self.budgetBytes = budgetBytes
        let bytes = cap * layout.blockByteCount
        // Anonymous mapping: untouched blocks cost no physical memory, so a generous budget is free.
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
            throw KVError.invalidBudget(budgetBytes, blockBytes: layout.blockByteCount)
        }
        storage = p.bindMemory(to: Float.self, capacity: cap * layout.blockFloatCount)
        refCounts = Array(repeating: 0, count: cap)
        // Pop from the end: hand out low block ids first so touched pages stay compact.
        freeList = (0..<Int32(cap)).reversed()
    }

    deinit { munmap(storage, capacity * layout.blockByteCount) }

    public var freeCount: Int { freeList.count }
    public var peakBytes: Int { peakUsedCount * layout.blockByteCount }
    public func resetPeak() { peakUsedCount = usedCount }

    /// Takes `count` fresh blocks (refcount 1), or throws without taking any.
    public func allocate(_ count: Int) throws -> [BlockID] {
        guard count <= freeList.count else {
            throw KVError.outOfMemory(neededBlocks: count, freeBlocks: freeList.count, budgetBytes: budgetBytes)
        }
        var out: [BlockID] = []
        out.reserveCapacity(count)
        for _ in 0..<count {
            let b = freeList.removeLast()
            refCounts[Int(b)] = 1
            out.append(BlockID(b))
        }
        usedCount += count
        peakUsedCount = max(peakUsedCount, usedCount)
        return out
    }

    public func retain(_ b: BlockID) {
        precondition(refCounts[Int(b.raw)] > 0, "retain of a free KV block")
        refCounts[Int(b.raw)] += 1
    }

    public func release(_ b: BlockID) {
        let i = Int(b.raw)
        precondition(refCounts[i] > 0, "release of a free KV block")
        refCounts[i] -= 1
        if refCounts[i] == 0 {
            freeList.append(b.raw)
            usedCount -= 1
        }
    }

    public func refCount(_ b: BlockID) -> Int { Int(refCounts[Int(b.raw)]) }

    /// Keys of one layer and KV head in block `b`: `[headDim, blockTokenCount]`.
    @inline(__always)
    public func keys(_ b: BlockID, layer: Int, kvHead: Int) -> UnsafeMutablePointer<Float> {
        storage + Int(b.raw) * layout.blockFloatCount + ((layer * 2) * layout.kvHeadCount + kvHead) * layout.tileFloatCount
    }

    /// Values of one layer and KV head in block `b`: `[blockTokenCount, headDim]`.
    @inline(__always)
    public func values(_ b: BlockID, layer: Int, kvHead: Int) -> UnsafeMutablePointer<Float> {
        storage + Int(b.raw) * layout.blockFloatCount + ((layer * 2 + 1) * layout.kvHeadCount + kvHead) * layout.tileFloatCount
    }

    /// Copies every layer's K and V of `source` into `destination` (copy-on-fork of a partial block).
    public func copy(_ source: BlockID, to destination: BlockID) {
        let n = layout.blockFloatCount
        (storage + Int(destination.raw) * n).update(from: storage + Int(source.raw) * n, count: n)
    }
}
