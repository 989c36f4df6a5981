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
/// against the block are one vector FMA per head dimension) and values `[blockTokenCount, headDim]`,
/// as `dtype` elements (K/V are computed in float32 and rounded to nearest even when stored).
public struct KVLayout: Sendable, Equatable {
    public let layerCount: Int
    public let kvHeadCount: Int
    public let headDim: Int
    public let blockTokenCount: Int
    public let dtype: DType

    public init(layerCount: Int, kvHeadCount: Int, headDim: Int, blockTokenCount: Int = 32, dtype: DType = .f32) {
        self.layerCount = layerCount; self.kvHeadCount = kvHeadCount
        self.headDim = headDim; self.blockTokenCount = blockTokenCount; self.dtype = dtype
    }
    /// Elements in one head's K (or V) tile of a block.
    public var tileElementCount: Int { headDim * blockTokenCount }
    public var tileByteCount: Int { tileElementCount * dtype.byteCount }
    public var blockElementCount: Int { layerCount * 2 * kvHeadCount * tileElementCount }
    public var blockByteCount: Int { blockElementCount * dtype.byteCount }
    /// KV bytes one token occupies (all layers, K and V).
    public var bytesPerToken: Int { layerCount * 2 * kvHeadCount * headDim * dtype.byteCount }
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
    private let storage: UnsafeMutableRawPointer
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
        // Bound once to the element type, so `keys`/`values` callers may assume it.
        if layout.dtype == .f32 {
            p.bindMemory(to: Float.self, capacity: cap * layout.blockElementCount)
        } else {
            p.bindMemory(to: UInt16.self, capacity: cap * layout.blockElementCount)
        }
        storage = p
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

    /// Keys of one layer and KV head in block `b`: `[headDim, blockTokenCount]` of `layout.dtype`.
    @inline(__always)
    public func keys(_ b: BlockID, layer: Int, kvHead: Int) -> UnsafeMutableRawPointer {
        storage + Int(b.raw) * layout.blockByteCount + ((layer * 2) * layout.kvHeadCount + kvHead) * layout.tileByteCount
    }

    /// Values of one layer and KV head in block `b`: `[blockTokenCount, headDim]` of `layout.dtype`.
    @inline(__always)
    public func values(_ b: BlockID, layer: Int, kvHead: Int) -> UnsafeMutableRawPointer {
        storage + Int(b.raw) * layout.blockByteCount + ((layer * 2 + 1) * layout.kvHeadCount + kvHead) * layout.tileByteCount
    }

    /// Stores one token's K and V (float32 `[headDim]` each) at `slot` of block `b`, rounded to
    /// `layout.dtype` (nearest even). K goes in transposed, so its elements are `blockTokenCount` apart.
    @inline(__always)
    public func store(key: UnsafePointer<Float>, value: UnsafePointer<Float>, block b: BlockID, slot: Int, layer: Int, kvHead: Int) {
        let D = layout.headDim, C = layout.blockTokenCount
        let kt = keys(b, layer: layer, kvHead: kvHead), vt = values(b, layer: layer, kvHead: kvHead)
        switch layout.dtype {
        case .f32:
            let k = kt.assumingMemoryBound(to: Float.self), v = vt.assumingMemoryBound(to: Float.self) + slot * D
            for d in 0..<D { k[d * C + slot] = key[d] }
            v.update(from: value, count: D)
        case .bf16:
            let k = kt.assumingMemoryBound(to: UInt16.self), v = vt.assumingMemoryBound(to: UInt16.self) + slot * D
            for d in 0..<D { k[d * C + slot] = floatToBF16(key[d]); v[d] = floatToBF16(value[d]) }
        case .f16:
            let k = kt.assumingMemoryBound(to: UInt16.self), v = vt.assumingMemoryBound(to: UInt16.self) + slot * D
            // Saturating: a K/V element past f16's range (|x| > 65504) is stored as ±65504 rather than
            // ±inf, which would turn every score of the block into NaN; NaN stays NaN.
            for d in 0..<D { k[d * C + slot] = floatToF16Saturating(key[d]); v[d] = floatToF16Saturating(value[d]) }
        }
    }

    /// The stored key element `d` of `slot`, widened to float32 (references and tests; not for hot loops).
    public func storedKey(_ b: BlockID, layer: Int, kvHead: Int, slot: Int, dim d: Int) -> Float {
        element(keys(b, layer: layer, kvHead: kvHead), d * layout.blockTokenCount + slot)
    }

    /// The stored value element `d` of `slot`, widened to float32.
    public func storedValue(_ b: BlockID, layer: Int, kvHead: Int, slot: Int, dim d: Int) -> Float {
        element(values(b, layer: layer, kvHead: kvHead), slot * layout.headDim + d)
    }

    private func element(_ tile: UnsafeMutableRawPointer, _ i: Int) -> Float {
        switch layout.dtype {
        case .f32: tile.assumingMemoryBound(to: Float.self)[i]
        case .bf16: bf16ToFloat(tile.assumingMemoryBound(to: UInt16.self)[i])
        case .f16: f16ToFloat(tile.assumingMemoryBound(to: UInt16.self)[i])
        }
    }

    /// Copies every layer's K and V of `source` into `destination` (copy-on-fork of a partial block).
    public func copy(_ source: BlockID, to destination: BlockID) {
        let n = layout.blockByteCount
        (storage + Int(destination.raw) * n).copyMemory(from: storage + Int(source.raw) * n, byteCount: n)
    }
}
