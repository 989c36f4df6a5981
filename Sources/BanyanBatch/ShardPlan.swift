/// How a batch job splits into N shards that any launcher can run independently (`banyan batch
/// --shard K/N`): every process computes the same plan from the same input, with no coordination.
///
/// Requests are sorted by prompt (a depth-first walk of the prompts' trie, as the prefix-tree
/// scheduler orders them); adjacent requests sharing at least `minimumSharedTokens` tokens form a
/// **prefix group**, kept on one shard so its shared prefix is prefilled once. A group's estimated
/// cost is the prefill tokens of its unique trie nodes plus its decode tokens. Groups go, largest
/// first, to the least-loaded shard (ties: earliest first line, lowest shard); a group costing more
/// than the total ÷ N is first split into ⌈cost ÷ (total ÷ N)⌉ contiguous parts of about equal cost, each recomputing
/// the prefix it shares with the part before it (BatchLLM's global prefix grouping, balanced).
public struct ShardPlan: Sendable {
    /// One input line as the partition sees it: its prompts' tokens and the tokens it may decode.
    public struct Unit: Sendable {
        public var line: Int
        public var prompts: [[Int]]
        public var decodeTokens: Int
        public init(line: Int, prompts: [[Int]], decodeTokens: Int) {
            self.line = line; self.prompts = prompts; self.decodeTokens = decodeTokens
        }
        var key: [Int] { prompts.first ?? [] }
        var promptTokens: Int { prompts.reduce(0) { $0 + $1.count } }
    }

    /// One shard's share.
    public struct Shard: Sendable {
        public var index: Int
        public var lines: [Int] = []
        /// Estimated cost: prefill tokens after sharing within the shard plus decode tokens.
        public var cost = 0
        /// Prompt tokens this shard does not prefill because an earlier request on it shares them.
        public var sharedPrefixTokens = 0
        public var groups = 0
    }

    /// Adjacent prompts sharing fewer tokens than this are not grouped (a BOS or a short common
    /// opening saves too little to constrain the balance for).
    public static let minimumSharedTokens = 16

    public let shardCount: Int
    public let shards: [Shard]
    /// Shard of each planned line.
    public let shardOfLine: [Int: Int]
    /// Prefix groups found, and how many were split for balance.
    public let groupCount: Int
    public let splitGroupCount: Int
    /// Prompt tokens prefilled more than once because a split group spans shards.
    public let recomputedPrefixTokens: Int
    /// Cost of the unsharded job (every shared prefix prefilled once).
    public let totalCost: Int

    /// max shard cost ÷ mean shard cost (1 is perfect balance).
    public var imbalance: Double {
        let mean = Double(shards.reduce(0) { $0 + $1.cost }) / Double(max(1, shardCount))
        return mean > 0 ? Double(shards.map(\.cost).max() ?? 0) / mean : 1
    }

    /// Shard of a line the plan did not see (an unparseable line, which gets an error record):
    /// spread by line number.
    public func shard(ofLine line: Int) -> Int { shardOfLine[line] ?? (line - 1) % shardCount }

    public init(units: [Unit], shards n: Int) {
        precondition(n >= 1)
        shardCount = n
        // Trie order: lexicographic by the first prompt, then by line (deterministic for equal prompts).
        let sorted = units.sorted { a, b in
            a.key.lexicographicallyPrecedes(b.key) || (a.key == b.key && a.line < b.line)
        }
        func shared(_ a: Unit, _ b: Unit) -> Int { zip(a.key, b.key).prefix { $0 == $1 }.count }
        // Per unit: the tokens it shares with the one before it in trie order (0 for the first).
        var lcp = [Int](repeating: 0, count: sorted.count)
        for i in sorted.indices.dropFirst() { lcp[i] = shared(sorted[i - 1], sorted[i]) }
        func cost(_ i: Int, sharing: Bool) -> Int {
            sorted[i].promptTokens - (sharing ? lcp[i] : 0) + sorted[i].decodeTokens
        }
        var total = 0
        for i in sorted.indices { total += cost(i, sharing: lcp[i] >= Self.minimumSharedTokens) }
        totalCost = total
        let target = max(1, (total + n - 1) / n)

        // Groups: maximal runs joined by a shared prefix of at least minimumSharedTokens.
        var runs: [Range<Int>] = []
        var start = 0
        for i in sorted.indices.dropFirst() where lcp[i] < Self.minimumSharedTokens {
            runs.append(start..<i); start = i
        }
        if !sorted.isEmpty { runs.append(start..<sorted.count) }
        groupCount = runs.count

        // Split a run costing more than the target into k = ⌈cost / target⌉ contiguous parts of about
        // equal cost (cuts where the run's cumulative cost is nearest c·b/k); each part after the
        // first recomputes the prefix it shares with the part before it.
        var pieces: [(range: Range<Int>, cost: Int)] = []
        var splits = 0, recomputed = 0
        for run in runs {
            var cumulative: [Int] = []   // cost through each unit of the run, sharing as unsplit
            var runCost = 0
            for i in run { runCost += cost(i, sharing: i != run.lowerBound); cumulative.append(runCost) }
            let k = min(run.count, (runCost + target - 1) / target)
            if k <= 1 { pieces.append((run, runCost)); continue }
            splits += 1
            var cuts: [Int] = []   // first unit of each part after the first
            for b in 1..<k {
                let want = Double(runCost) * Double(b) / Double(k)
                let earliest = (cuts.last ?? run.lowerBound) + 1, latest = run.upperBound - (k - b)
                guard earliest <= latest else { continue }
                // The cut falls before unit `c`: the cost through unit c - 1 should be nearest `want`.
                let best = (earliest...latest).min { a, b in
                    abs(Double(cumulative[a - 1 - run.lowerBound]) - want) < abs(Double(cumulative[b - 1 - run.lowerBound]) - want)
                }!
                cuts.append(best)
            }
            let bounds = [run.lowerBound] + cuts + [run.upperBound]
            for (lo, hi) in zip(bounds, bounds.dropFirst()) {
                var c = 0
                for i in lo..<hi { c += cost(i, sharing: i != lo) }
                pieces.append((lo..<hi, c))
                if lo != run.lowerBound { recomputed += lcp[lo] }
            }
        }
        splitGroupCount = splits
        recomputedPrefixTokens = recomputed

        // Largest first to the least-loaded shard.
        let order = pieces.indices.sorted { a, b in
            pieces[a].cost != pieces[b].cost ? pieces[a].cost > pieces[b].cost
                : sorted[pieces[a].range.lowerBound].line < sorted[pieces[b].range.lowerBound].line
        }
        var result = (0..<n).map { Shard(index: $0) }
        var of: [Int: Int] = [:]
        for p in order {
            let s = result.indices.min { result[$0].cost != result[$1].cost ? result[$0].cost < result[$1].cost : $0 < $1 }!
            result[s].cost += pieces[p].cost
            result[s].groups += 1
            for i in pieces[p].range {
                result[s].lines.append(sorted[i].line)
                of[sorted[i].line] = s
                if i != pieces[p].range.lowerBound { result[s].sharedPrefixTokens += lcp[i] }
            }
        }
        for s in result.indices { result[s].lines.sort() }
        shards = result
        shardOfLine = of
    }
}

extension ShardPlan {
    /// The plan of a parsed input: one unit per valid line (its prompts' tokens, and max_tokens × n
    /// decode tokens per prompt); error and duplicate lines are spread by line number.
    init(entries: [BatchJob.Entry], shards: Int) {
        let units: [Unit] = entries.compactMap {
            guard case .item(let item) = $0 else { return nil }
            return Unit(line: item.line, prompts: item.body.requests.map(\.prompt),
                        decodeTokens: item.body.requests.reduce(0) { $0 + $1.maxTokens * $1.n })
        }
        self.init(units: units, shards: shards)
    }
}
