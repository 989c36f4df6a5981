/// How a batch job splits into N shards that any launcher can run independently (`banyan batch
/// --shard K/N`): every process computes the same plan from the same input, with no coordination.
///
/// Requests are sorted by prompt (a depth-first walk of the prompts' trie, as the prefix-tree
/// scheduler orders them); adjacent requests sharing at least `minimumSharedTokens` tokens form a
/// **prefix group**, kept on one shard so its shared prefix is prefilled once. A group's estimated
/// cost is the prefill tokens of its unique trie nodes plus its decode tokens. Groups go, largest
/// first, to the least-loaded shard (ties: earliest first line, lowest shard); a group costing more
/// than the total ÷ N is first split into about cost ÷ (total ÷ N) contiguous parts of equal cost, each recomputing
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

        // Split a run costing more than the target into k contiguous parts of about equal cost, each
        // part after the first recomputing the prefix it shares with the part before it. k = ⌈cost / target⌉ keeps every part within the
        // target; k = round(cost / target) keeps parts nearest it: both are planned, and the one with
        // the smaller largest shard kept (then fewer recomputed tokens), which is still deterministic.
        // Per run: the cost through each of its units, sharing as unsplit (the last is the run's cost).
        let cumulativeCosts: [[Int]] = runs.map { run in
            var total = 0
            return run.map { i in total += cost(i, sharing: i != run.lowerBound); return total }
        }
        let runCosts = cumulativeCosts.map { $0.last ?? 0 }
        func assign(parts: (_ run: Int) -> Int) -> (shards: [Shard], of: [Int: Int], splits: Int, recomputed: Int) {
            var pieces: [(range: Range<Int>, cost: Int)] = []
            var splits = 0, recomputed = 0
            for (r, run) in runs.enumerated() {
                let cumulative = cumulativeCosts[r], runCost = runCosts[r]
                let k = runCost > target ? min(run.count, max(1, parts(r))) : 1
                if k <= 1 { pieces.append((run, runCost)); continue }
                splits += 1
                // Every part after the first also prefills the run's common prefix again: equal parts
                // cost T = (cost + (k - 1)·prefix) / k, so the b-th cut falls where the run's own
                // cumulative cost reaches b·T - (b - 1)·prefix.
                let prefix = Double(lcp[(run.lowerBound + 1)..<run.upperBound].min() ?? 0)
                let part = (Double(runCost) + Double(k - 1) * prefix) / Double(k)
                var cuts: [Int] = []   // first unit of each part after the first
                for b in 1..<k {
                    let want = Double(b) * part - Double(b - 1) * prefix
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
            return (result, of, splits, recomputed)
        }
        // Apportioned: a run's quota is cost·N/total shards; big runs get ⌊quota⌋ parts, and the shards
        // left after the small runs' share go one each to the largest remainders (Hamilton's method),
        // so the parts fill N shards about exactly.
        let quotas = runCosts.map { Double($0) * Double(n) / Double(max(1, total)) }
        var apportioned = runCosts.indices.map { runCosts[$0] > target ? max(1, Int(quotas[$0])) : 1 }
        let small = runCosts.indices.filter { runCosts[$0] <= target }.reduce(0.0) { $0 + quotas[$1] }
        var left = n - Int(small.rounded()) - runCosts.indices.filter { runCosts[$0] > target }.reduce(0) { $0 + apportioned[$1] }
        for r in runCosts.indices.filter({ runCosts[$0] > target })
            .sorted(by: { (quotas[$0] - Double(apportioned[$0]), -$0) > (quotas[$1] - Double(apportioned[$1]), -$1) }) where left > 0 {
            apportioned[r] += 1; left -= 1
        }
        let candidates = [
            assign { (runCosts[$0] + target - 1) / target },                     // every part within the target
            assign { Int((Double(runCosts[$0]) / Double(target)).rounded()) },   // parts nearest the target
            assign { apportioned[$0] },
        ]
        func key(_ a: (shards: [Shard], of: [Int: Int], splits: Int, recomputed: Int)) -> (Int, Int) {
            (a.shards.map(\.cost).max() ?? 0, a.recomputed)
        }
        let best = candidates.min { key($0) < key($1) }!
        shards = best.shards
        shardOfLine = best.of
        splitGroupCount = best.splits
        recomputedPrefixTokens = best.recomputed
    }
}

extension ShardPlan {
    /// What another assignment of the same units costs (`shardOf` maps a line to its shard): each
    /// shard shares prefixes only among its own requests. For comparing with naive sharding.
    public struct Evaluation: Sendable {
        public var costs: [Int]
        /// Prompt tokens prefilled beyond the unsharded job's (prefixes computed on several shards).
        public var recomputedPrefixTokens: Int
        public var imbalance: Double {
            let mean = Double(costs.reduce(0, +)) / Double(max(1, costs.count))
            return mean > 0 ? Double(costs.max() ?? 0) / mean : 1
        }
    }

    public static func evaluate(units: [Unit], shards n: Int, shardOf: (Int) -> Int) -> Evaluation {
        var perShard = [[Unit]](repeating: [], count: n)
        for u in units { perShard[shardOf(u.line)].append(u) }
        let costs = perShard.map { ShardPlan(units: $0, shards: 1).totalCost }
        return Evaluation(costs: costs, recomputedPrefixTokens: costs.reduce(0, +) - ShardPlan(units: units, shards: 1).totalCost)
    }

    /// The units of a parsed input (valid, non-duplicate lines), in file order.
    static func units(_ entries: [BatchJob.Entry]) -> [Unit] {
        entries.compactMap {
            guard case .item(let item) = $0 else { return nil }
            return Unit(line: item.line, prompts: item.body.requests.map(\.prompt),
                        decodeTokens: item.body.requests.reduce(0) { $0 + $1.maxTokens * $1.n })
        }
    }

    /// The plan of a parsed input: one unit per valid line (its prompts' tokens, and max_tokens × n
    /// decode tokens per prompt); error and duplicate lines are spread by line number.
    init(entries: [BatchJob.Entry], shards: Int) {
        self.init(units: ShardPlan.units(entries), shards: shards)
    }
}
