import BanyanKV

/// How a step's attention reads the KV cache.
public enum AttentionMode: String, Sendable, CaseIterable {
    /// Shared blocks are read once for all the queries that need them (Hydragen's batched prefix).
    case hydragen
    /// Each sequence reads its whole path alone, as paged attention with prefix caching does.
    case baseline
    /// No attention at all: an upper bound on throughput; outputs are meaningless.
    case none
}

/// One query row of a step: the token of `sequence` at `position`, attending to positions 0...position
/// through the sequence's block table.
public struct AttentionRow: Sendable {
    public var sequence: SequenceID
    public var blocks: [BlockID]
    public var position: Int
    public init(sequence: SequenceID, blocks: [BlockID], position: Int) {
        self.sequence = sequence; self.blocks = blocks; self.position = position
    }
}

/// The attention work of one step, computed once and used by every layer (a block holds all layers).
///
/// Attention is evaluated block by block in position order: for each query row and each KV block it
/// reads, a partial softmax (block max, sum, weighted values) is merged into the row's running state
/// (the log-sum-exp merge). Because blocks are aligned to absolute positions, the arithmetic a row
/// performs is fixed by its own path and position alone. Hydragen only changes *which rows are
/// computed together*: a block read by several sequences (a shared prefix) becomes one task whose
/// queries — all sequences, all query heads of each KV head — are evaluated against the block while
/// it sits in cache, so its KV is read from memory once per step instead of once per sequence. The
/// result is bitwise the same as baseline, and independent of what else is in the batch.
///
/// Cost rule: every block read by two or more rows is batched. Batching never adds arithmetic (the
/// per-block merge happens in both modes), so there is no length below which folding a shared node
/// into each sequence's own attention would be cheaper; measured in docs/BENCHMARKS.md.
public struct AttentionPlan: Sendable {
    /// One KV block and the rows that read it; row `rows[i]` reads the block's first `validCounts[i]` slots.
    public struct Task: Sendable {
        public var block: BlockID
        public var blockIndex: Int
        public var rows: [Int32]
        public var validCounts: [Int32]
        /// No earlier task reads this block: the walk meets it cold, so the kernel may prefetch it
        /// while computing the task before. (Baseline reads a shared block once per sequence; after
        /// the first, it is in cache and a prefetch only costs instructions.)
        public var firstRead = true
    }

    public let mode: AttentionMode
    public let rowCount: Int
    /// Sorted by `blockIndex`, so each row meets its blocks in position order.
    public let tasks: [Task]

    /// Groups the rows' block reads into tasks: by block for hydragen, by (block, sequence) for baseline.
    public init(rows: [AttentionRow], blockTokenCount: Int, mode: AttentionMode) {
        self.mode = mode
        self.rowCount = rows.count
        guard mode != .none else { tasks = []; return }
        struct Key: Hashable { let block: BlockID; let sequence: Int }
        var index: [Key: Int] = [:]
        var tasks: [Task] = []
        for (r, row) in rows.enumerated() {
            let blockCount = row.position / blockTokenCount + 1
            precondition(row.blocks.count >= blockCount, "row at position \(row.position) has too few KV blocks")
            for b in 0..<blockCount {
                let valid = min(blockTokenCount, row.position + 1 - b * blockTokenCount)
                let key = Key(block: row.blocks[b], sequence: mode == .hydragen ? -1 : row.sequence.raw)
                if let t = index[key] {
                    tasks[t].rows.append(Int32(r))
                    tasks[t].validCounts.append(Int32(valid))
                } else {
                    index[key] = tasks.count
                    tasks.append(Task(block: row.blocks[b], blockIndex: b, rows: [Int32(r)], validCounts: [Int32(valid)]))
                }
            }
        }
        // Each row must meet its blocks in position order. Hydragen walks positions across all rows
        // (a shared block is one task); baseline walks sequence by sequence, each over its whole
        // path, as paged attention does — so a shared prefix is streamed again for every sequence
        // instead of staying in cache between consecutive reads of the same block.
        let sequenceOrder = Dictionary(rows.enumerated().map { ($1.sequence, $0) }, uniquingKeysWith: min)
        func key(_ t: Task, _ offset: Int) -> (Int, Int, Int) {
            mode == .hydragen ? (t.blockIndex, 0, offset) : (sequenceOrder[rows[Int(t.rows[0])].sequence]!, t.blockIndex, offset)
        }
        var sorted = tasks.enumerated().sorted { key($0.element, $0.offset) < key($1.element, $1.offset) }.map(\.element)
        var seen = Set<BlockID>()
        for i in sorted.indices { sorted[i].firstRead = seen.insert(sorted[i].block).inserted }
        self.tasks = sorted
    }

    /// Tasks read by more than one row, and the total block reads they save versus one read per row.
    public var sharedTaskCount: Int { tasks.filter { $0.rows.count > 1 }.count }
    public var blockReads: Int { tasks.count }
}
