import Foundation
import Testing
import BanyanBatch
import BanyanTestSupport

/// Random jobs with prefix structure: `groups` documents (a random shared prefix each), each asked
/// 1…`maxQuestions` questions (own random suffix), random max_tokens; plus some loners.
func shardWorkload(seed: UInt64, groups: Int, maxQuestions: Int, loners: Int) -> [ShardPlan.Unit] {
    var rng = SeededRNG(seed: seed)
    func tokens(_ n: Int) -> [Int] { (0..<n).map { _ in 3 + Int(rng.next() % 500) } }
    var units: [ShardPlan.Unit] = []
    var line = 0
    for _ in 0..<groups {
        let prefix = tokens(32 + Int(rng.next() % 400))
        for _ in 0..<(1 + Int(rng.next() % UInt64(maxQuestions))) {
            line += 1
            units.append(ShardPlan.Unit(line: line, prompts: [prefix + tokens(5 + Int(rng.next() % 40))], decodeTokens: 16 + Int(rng.next() % 64)))
        }
    }
    for _ in 0..<loners {
        line += 1
        units.append(ShardPlan.Unit(line: line, prompts: [tokens(10 + Int(rng.next() % 100))], decodeTokens: 32))
    }
    // Interleave the lines as a real file might (the plan must not depend on file order).
    var shuffled = units
    for i in shuffled.indices.reversed() { shuffled.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
    return shuffled
}

@Suite struct ShardPlanTests {
    @Test(arguments: [1, 2, 3, 4, 8, 16])
    func partitionProperties(shards n: Int) {
        let units = shardWorkload(seed: 0x5AAD + UInt64(n), groups: 20, maxQuestions: 12, loners: 15)
        let plan = ShardPlan(units: units, shards: n)
        // Deterministic: the same input in another order (another process reading the same file
        // builds the same list; here even a permuted one) gives the same assignment.
        let again = ShardPlan(units: units.reversed(), shards: n)
        #expect(plan.shards.map(\.lines) == again.shards.map(\.lines))
        #expect(plan.shardOfLine == again.shardOfLine)
        // Every line in exactly one shard.
        let all = plan.shards.flatMap(\.lines)
        #expect(all.count == units.count && Set(all) == Set(units.map(\.line)))
        for s in plan.shards { for l in s.lines { #expect(plan.shard(ofLine: l) == s.index) } }
        // Groups are kept whole unless split: lines sharing a prefix of ≥ 16 tokens sit together,
        // except in the groups the plan says it split.
        var byPrefix: [[Int]: Set<Int>] = [:]
        for u in units where u.prompts[0].count > 32 { byPrefix[Array(u.prompts[0].prefix(32)), default: []].insert(plan.shard(ofLine: u.line)) }
        let spread = byPrefix.values.filter { $0.count > 1 }.count
        #expect(spread <= plan.splitGroupCount, "\(spread) groups span shards but \(plan.splitGroupCount) were split")
        // Balanced: greedy largest-first on pieces of at most total/N keeps every shard within one
        // piece of the mean, so max/mean ≤ 1 + N·maxPiece/total ≤ 2; this workload does far better.
        #expect(plan.imbalance <= 1.25, "imbalance \(plan.imbalance) with \(n) shards")
        if n == 1 {
            #expect(plan.splitGroupCount == 0 && plan.recomputedPrefixTokens == 0 && plan.shards[0].cost == plan.totalCost)
        }
        #expect(plan.shards.reduce(0) { $0 + $1.cost } == plan.totalCost + plan.recomputedPrefixTokens)
    }

    /// One group larger than total ÷ N (every request behind one system prompt) is split: each part
    /// recomputes the shared prompt, and the plan counts those tokens.
    @Test func oneSharedPromptIsSplit() {
        var rng = SeededRNG(seed: 7)
        let system = (0..<200).map { _ in 3 + Int(rng.next() % 500) }
        let units = (1...40).map { i in
            ShardPlan.Unit(line: i, prompts: [system + (0..<20).map { _ in 3 + Int(rng.next() % 500) }], decodeTokens: 50)
        }
        let plan = ShardPlan(units: units, shards: 4)
        #expect(plan.groupCount == 1 && plan.splitGroupCount == 1)
        #expect(plan.shards.allSatisfy { !$0.lines.isEmpty })
        // Each extra part recomputes the 200-token system prompt (plus whatever its first question
        // shares by chance with the one before it).
        let parts = plan.shards.reduce(0) { $0 + $1.groups }
        #expect(plan.recomputedPrefixTokens >= 200 * (parts - 1))
        #expect(plan.imbalance <= 1.2, "\(plan.imbalance)")
        // Unrelated prompts are not grouped: a shared BOS is not a prefix group.
        let loners = (1...12).map { i in ShardPlan.Unit(line: i, prompts: [[1] + (0..<30).map { _ in 3 + Int(rng.next() % 500) }], decodeTokens: 8) }
        #expect(ShardPlan(units: loners, shards: 3).groupCount == 12)
    }

    /// Against naive sharding of the same job: the prefix-aware plan recomputes far fewer prefix
    /// tokens than round-robin or random assignment, and an assignment that keeps everything on
    /// one shard recomputes none.
    @Test func beatsNaiveSharding() {
        let units = shardWorkload(seed: 99, groups: 24, maxQuestions: 16, loners: 10)
        let plan = ShardPlan(units: units, shards: 8)
        let roundRobin = ShardPlan.evaluate(units: units, shards: 8) { $0 % 8 }
        #expect(plan.recomputedPrefixTokens * 4 < roundRobin.recomputedPrefixTokens,
                "plan \(plan.recomputedPrefixTokens) vs round-robin \(roundRobin.recomputedPrefixTokens)")
        #expect(ShardPlan.evaluate(units: units, shards: 8) { _ in 0 }.recomputedPrefixTokens == 0)
        // The plan's own accounting agrees with evaluating its assignment.
        let own = ShardPlan.evaluate(units: units, shards: 8) { plan.shard(ofLine: $0) }
        #expect(own.recomputedPrefixTokens <= plan.recomputedPrefixTokens)
    }

    @Test func emptyAndTinyInputs() {
        let empty = ShardPlan(units: [], shards: 3)
        #expect(empty.shards.count == 3 && empty.shards.allSatisfy { $0.lines.isEmpty } && empty.imbalance == 1)
        let one = ShardPlan(units: [ShardPlan.Unit(line: 1, prompts: [[1, 2, 3]], decodeTokens: 4)], shards: 5)
        #expect(one.shards[0].lines == [1] && one.shard(ofLine: 1) == 0)
        // Lines the plan never saw (error records) spread by line number.
        #expect(one.shard(ofLine: 7) == 1)
    }
}
