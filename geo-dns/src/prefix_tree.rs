//! A binary prefix tree from IP networks to small integer outcomes (a region ranking), merged so
//! that neighbouring networks with the same outcome become one leaf.
//!
//! The depth of the leaf a lookup ends on is the widest prefix over which the answer is the same:
//! that is the ECS scope prefix length returned to resolvers (RFC 7871 section 7.2.1), so that a
//! resolver can reuse one answer for every client in it. gdnsd builds its geoip maps the same way;
//! servers that return the database's own network length (often /24 or longer) make resolvers
//! ask again for every subnet.
//!
//! Addresses are `u128` with the network's first bit as the top bit (IPv4 is shifted up by 96).

/// Top bit of a child reference: the rest is an outcome, not a node index.
const LEAF: u32 = 1 << 31;

/// Bits resolved by the first-level table (a DIR-16 lookup: one load instead of up to 16).
const STRIDE: u8 = 16;

/// The tree: nodes are pairs of child references; the root may itself be a leaf. After
/// [`PrefixTree::merge`], the first `STRIDE` bits are also resolved by a table.
#[derive(Debug, Clone)]
pub struct PrefixTree {
    nodes: Vec<[u32; 2]>,
    root: u32,
    bits: u8,
    /// Indexed by the top `STRIDE` bits: a leaf reference with its depth, or the node at depth
    /// `STRIDE` to continue from. Empty until merged.
    table: Vec<(u32, u8)>,
}

impl PrefixTree {
    /// A tree of `bits`-bit addresses (32 or 128) where every address maps to `default`.
    pub fn new(bits: u8, default: u32) -> Self {
        Self {
            nodes: Vec::new(),
            root: LEAF | (default & !LEAF),
            bits,
            table: Vec::new(),
        }
    }

    /// Sets every address in `addr/len` to `value` (later inserts win over earlier ones).
    pub fn insert(&mut self, addr: u128, len: u8, value: u32) {
        let leaf = LEAF | (value & !LEAF);
        let len = len.min(self.bits);
        self.table.clear();
        if len == 0 {
            self.nodes.clear();
            self.root = leaf;
            return;
        }
        if self.root & LEAF != 0 {
            self.nodes.push([self.root, self.root]);
            self.root = (self.nodes.len() - 1) as u32;
        }
        let mut node = self.root as usize;
        for depth in 0..len {
            let bit = ((addr >> (127 - depth)) & 1) as usize;
            if depth + 1 == len {
                self.nodes[node][bit] = leaf;
                return;
            }
            let child = self.nodes[node][bit];
            node = if child & LEAF != 0 {
                self.nodes.push([child, child]);
                let idx = self.nodes.len() - 1;
                self.nodes[node][bit] = idx as u32;
                idx
            } else {
                child as usize
            };
        }
    }

    /// Merges every pair of sibling leaves with the same outcome into their parent, bottom up, and
    /// drops the nodes that frees. Call once after the inserts.
    pub fn merge(&mut self) {
        let mut out = Vec::with_capacity(self.nodes.len() / 2);
        let root = compact(&self.nodes, self.root, &mut out);
        self.nodes = out;
        self.root = root;
        let mut table = vec![(root, 0u8); 1 << STRIDE];
        fill(&self.nodes, root, 0, 0, &mut table);
        self.table = table;
    }

    /// The outcome for `addr`, and the prefix length over which it holds.
    pub fn lookup(&self, addr: u128) -> (u32, u8) {
        let (mut cur, mut depth) = match self.table.get((addr >> (128 - STRIDE as u32)) as usize) {
            Some(&entry) => entry,
            None => (self.root, 0),
        };
        while cur & LEAF == 0 {
            let bit = ((addr >> (127 - depth as u32)) & 1) as usize;
            cur = self.nodes[cur as usize][bit];
            depth += 1;
        }
        (cur & !LEAF, depth)
    }

    /// Number of interior nodes (a measure of memory: 8 bytes each).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

/// Copies the subtree at `cur` into `out` with equal sibling leaves merged; returns its new reference.
/// Recursion depth is bounded by the address width (128).
fn compact(nodes: &[[u32; 2]], cur: u32, out: &mut Vec<[u32; 2]>) -> u32 {
    if cur & LEAF != 0 {
        return cur;
    }
    let [l, r] = nodes[cur as usize];
    let l = compact(nodes, l, out);
    let r = compact(nodes, r, out);
    if l == r && l & LEAF != 0 {
        return l;
    }
    out.push([l, r]);
    (out.len() - 1) as u32
}

/// Writes the subtree at `cur` (at `depth`, covering table slots from `prefix`) into `table`.
fn fill(nodes: &[[u32; 2]], cur: u32, depth: u8, prefix: usize, table: &mut [(u32, u8)]) {
    if cur & LEAF != 0 || depth == STRIDE {
        let span = 1usize << (STRIDE - depth);
        let at = prefix << (STRIDE - depth);
        for slot in &mut table[at..at + span] {
            *slot = (cur, depth);
        }
        return;
    }
    let [l, r] = nodes[cur as usize];
    fill(nodes, l, depth + 1, prefix << 1, table);
    fill(nodes, r, depth + 1, (prefix << 1) | 1, table);
}

/// An IPv4 address in tree form.
pub fn v4_key(a: std::net::Ipv4Addr) -> u128 {
    (u32::from(a) as u128) << 96
}

/// An IPv6 address in tree form.
pub fn v6_key(a: std::net::Ipv6Addr) -> u128 {
    u128::from(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn net(s: &str) -> (u128, u8) {
        let (a, l) = s.split_once('/').unwrap();
        (v4_key(a.parse::<Ipv4Addr>().unwrap()), l.parse().unwrap())
    }

    #[test]
    fn lookups_follow_the_longest_inserted_prefix() {
        let mut t = PrefixTree::new(32, 0);
        let (a, l) = net("10.0.0.0/8");
        t.insert(a, l, 1);
        let (a, l) = net("10.1.0.0/16");
        t.insert(a, l, 2);
        t.merge();
        assert_eq!(t.lookup(v4_key("10.1.2.3".parse().unwrap())), (2, 16));
        assert_eq!(t.lookup(v4_key("10.2.2.3".parse().unwrap())).0, 1);
        assert_eq!(t.lookup(v4_key("11.0.0.1".parse().unwrap())).0, 0);
    }

    #[test]
    fn neighbours_with_the_same_outcome_merge_into_a_wider_scope() {
        let mut t = PrefixTree::new(32, 0);
        // 256 /24s of one /16, all the same outcome: one /16 leaf after merging.
        for i in 0..256u32 {
            let a = v4_key(Ipv4Addr::from(0x0a01_0000 | (i << 8)));
            t.insert(a, 24, 7);
        }
        t.merge();
        assert_eq!(t.lookup(v4_key("10.1.200.9".parse().unwrap())), (7, 16));
        // Everything else stays default, at the widest prefix that excludes 10.1/16.
        let (v, scope) = t.lookup(v4_key("192.0.2.1".parse().unwrap()));
        assert_eq!((v, scope), (0, 1));
    }

    #[test]
    fn the_stride_table_agrees_with_the_tree_walk() {
        let mut t = PrefixTree::new(32, 0);
        let mut seed = 0x1234_5678u32;
        for i in 0..2000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let len = (seed % 28 + 4) as u8;
            let a = (seed & (u32::MAX << (32 - len))) as u128;
            t.insert(a << 96, len, i % 5);
        }
        t.merge();
        let walk = |addr: u128| {
            let mut cur = t.root;
            let mut depth = 0u8;
            while cur & LEAF == 0 {
                cur = t.nodes[cur as usize][((addr >> (127 - depth as u32)) & 1) as usize];
                depth += 1;
            }
            (cur & !LEAF, depth)
        };
        for i in 0..100_000u64 {
            let a = ((i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u128) << 96;
            assert_eq!(t.lookup(a), walk(a), "{a:x}");
        }
    }

    #[test]
    fn a_uniform_tree_answers_with_scope_zero() {
        let mut t = PrefixTree::new(32, 3);
        let (a, l) = net("10.0.0.0/8");
        t.insert(a, l, 3);
        t.merge();
        assert_eq!(t.lookup(0), (3, 0));
        assert_eq!(t.node_count(), 0);
    }
}
