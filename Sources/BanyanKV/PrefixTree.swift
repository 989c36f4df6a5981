/// A radix tree over token sequences: inserting prompts finds their shared prefixes automatically,
/// splitting a node where two prompts diverge. Node 0 is the (possibly empty) root; every other node
/// holds the run of tokens after its parent's. The engine prefills each node once and forks its
/// children from it, so a shared run is computed and stored once however many prompts contain it.
public struct PrefixTree: Sendable {
    public struct Node: Sendable {
        /// Tokens of this node (after the parent's).
        public var tokens: [Int]
        public var parent: Int?
        public var children: [Int] = []
        /// Indices of the inserted sequences that end exactly at this node's last token.
        public var endingHere: [Int] = []
        /// Tokens before this node (the sum of its ancestors' lengths).
        public var depthInTokens: Int
    }

    public private(set) var nodes: [Node] = [Node(tokens: [], parent: nil, depthInTokens: 0)]

    public init() {}

    /// A tree holding every sequence of `sequences` (insertion index = position in the array).
    public init(_ sequences: [[Int]]) {
        for (i, s) in sequences.enumerated() { insert(s, index: i) }
    }

    /// Inserts `tokens` as sequence `index`, returning the node it ends at.
    @discardableResult
    public mutating func insert(_ tokens: [Int], index: Int) -> Int {
        var node = 0
        var i = 0
        while i < tokens.count {
            // Children start with distinct tokens (radix invariant), so at most one can match.
            guard let child = nodes[node].children.first(where: { nodes[$0].tokens.first == tokens[i] }) else {
                let new = nodes.count
                nodes.append(Node(tokens: Array(tokens[i...]), parent: node, depthInTokens: i))
                nodes[node].children.append(new)
                node = new
                i = tokens.count
                break
            }
            let run = nodes[child].tokens
            var common = 0
            while common < run.count && i + common < tokens.count && run[common] == tokens[i + common] { common += 1 }
            if common < run.count { split(child, at: common) }
            node = child
            i += common
        }
        nodes[node].endingHere.append(index)
        return node
    }

    /// Cuts `node` after `length` tokens: `node` keeps the head, a new child takes the tail and the
    /// old children and endings.
    private mutating func split(_ node: Int, at length: Int) {
        let tail = nodes.count
        var tailNode = Node(tokens: Array(nodes[node].tokens[length...]), parent: node,
                            depthInTokens: nodes[node].depthInTokens + length)
        tailNode.children = nodes[node].children
        tailNode.endingHere = nodes[node].endingHere
        nodes.append(tailNode)
        for c in tailNode.children { nodes[c].parent = tail }
        nodes[node].tokens.removeLast(nodes[node].tokens.count - length)
        nodes[node].children = [tail]
        nodes[node].endingHere = []
    }

    /// Nodes grouped by depth in the tree (root excluded): every node comes after its parent.
    public var levels: [[Int]] {
        var out: [[Int]] = []
        var frontier = nodes[0].children
        while !frontier.isEmpty {
            out.append(frontier)
            frontier = frontier.flatMap { nodes[$0].children }
        }
        return out
    }

    /// The node each inserted sequence ends at, by insertion index.
    public var endNodes: [Int: Int] {
        var out: [Int: Int] = [:]
        for (n, node) in nodes.enumerated() { for i in node.endingHere { out[i] = n } }
        return out
    }

    /// Total tokens stored in the tree (each shared run counted once).
    public var tokenCount: Int { nodes.reduce(0) { $0 + $1.tokens.count } }
}
