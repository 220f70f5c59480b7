//! Trees: `{"nodes":[…]}` followed by a newline, nodes sorted by name.

use serde::Deserialize;

use super::Node;
use crate::error::FormatError;
use crate::id::{Id, TreeId};

/// A directory listing, stored as a tree blob.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct TreeRepr {
    #[serde(default, deserialize_with = "super::null_as_default")]
    nodes: Vec<Node>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Adds a node (order is fixed when serializing).
    pub fn push(&mut self, node: Node) {
        self.nodes.push(node);
    }

    /// Sorts nodes by name bytes (restic's order).
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// True if names are strictly increasing (sorted, no duplicates).
    pub fn is_sorted_unique(&self) -> bool {
        self.nodes.windows(2).all(|w| w[0].name < w[1].name)
    }

    /// Finds a node by name (binary search; the tree must be sorted).
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    fn write(&self, out: &mut Vec<u8>) -> Result<(), FormatError> {
        let mut order: Vec<&Node> = self.nodes.iter().collect();
        if !self.is_sorted_unique() {
            order.sort_by(|a, b| a.name.cmp(&b.name));
        }
        out.extend_from_slice(b"{\"nodes\":[");
        for (i, n) in order.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            crate::gojson::to_writer(&mut *out, *n).map_err(|e| FormatError::json("tree", e))?;
        }
        out.extend_from_slice(b"]}\n");
        Ok(())
    }

    /// The tree blob bytes, exactly as restic writes them. Nodes are written
    /// sorted by name; duplicates are rejected (restic refuses them too).
    pub fn try_to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        let mut sorted: Vec<&[u8]> = self.nodes.iter().map(|n| n.name.as_slice()).collect();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(FormatError::invalid(
                "tree",
                format!("duplicate node name {:?}", String::from_utf8_lossy(w[0])),
            ));
        }
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 320);
        self.write(&mut out)?;
        Ok(out)
    }

    /// Like [`Tree::try_to_bytes`] but infallible: duplicate names are written
    /// as they are (in stable order). Serializing nodes cannot otherwise fail.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.nodes.len() * 320);
        match self.write(&mut out) {
            Ok(()) => out,
            // Unreachable: node serialization only writes to a Vec and all
            // raw fragments are valid by construction. Fall back to the
            // empty tree rather than panicking.
            Err(_) => b"{\"nodes\":[]}\n".to_vec(),
        }
    }

    /// Serializes and returns the tree id with the bytes.
    pub fn encode(&self) -> Result<(TreeId, Vec<u8>), FormatError> {
        let bytes = self.try_to_bytes()?;
        Ok((TreeId::from(Id::hash(&bytes)), bytes))
    }

    /// Parses a tree blob (unknown keys are ignored; order is kept as stored).
    pub fn from_bytes(data: &[u8]) -> Result<Tree, FormatError> {
        let r: TreeRepr = serde_json::from_slice(data).map_err(|e| FormatError::json("tree", e))?;
        Ok(Tree { nodes: r.nodes })
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;
    use crate::id::BlobId;
    use proptest::prelude::*;

    const GOLDEN: &[u8] = include_bytes!("testdata/restic_tree.json");

    #[test]
    fn golden_tree_roundtrips_byte_identical() {
        let tree = Tree::from_bytes(GOLDEN).unwrap();
        assert_eq!(tree.nodes.len(), 10);
        assert!(tree.is_sorted_unique());
        assert_eq!(tree.to_bytes(), GOLDEN);
        let bad = tree.find(b"link-bad").unwrap();
        assert_eq!(bad.link_target, b"bad\xe2\x82-\xff\xed\xa0\x80end");
        let weird = &tree.nodes[8];
        let mut want = b"nonutf8-\xff\xfe-".to_vec();
        want.extend_from_slice("é-\u{a0}-\u{200b}-😀-\u{378}".as_bytes());
        assert_eq!(weird.name, want);
        assert_eq!(weird.node_type, NodeType::Socket);
        let f = tree.find(b"a\"quote\\back").unwrap();
        assert_eq!(f.extended_attributes[0].value, b"v\x00\xff");
        assert_eq!(f.content.as_ref().unwrap()[0], BlobId(Id::hash(b"blob1")));
        let d = tree.find(b"dir<html>&").unwrap();
        assert_eq!(d.subtree, Some(BlobId(Id::hash(b"subtree"))));
        assert_eq!(d.generic_attributes["a.b"].get(), r#"{"x":[1,2]}"#);
        assert_eq!(NodeType::from_go_mode(d.mode), NodeType::Dir);
        assert_eq!(tree.nodes[0].content, Some(vec![]));
        assert_eq!(tree.nodes[1].content, None);
    }

    #[test]
    fn sorting_empty_and_duplicates() {
        let mut t = Tree::new();
        t.push(Node::new("b", NodeType::File));
        t.push(Node::new("a", NodeType::Dir));
        let bytes = t.to_bytes();
        let back = Tree::from_bytes(&bytes).unwrap();
        assert_eq!(back.nodes[0].name, b"a");
        assert!(bytes.ends_with(b"]}\n"));
        assert_eq!(Tree::new().to_bytes(), b"{\"nodes\":[]}\n");
        assert_eq!(
            Tree::from_bytes(br#"{"x":1,"nodes":null}"#).unwrap(),
            Tree::new()
        );
        t.push(Node::new("a", NodeType::File));
        assert!(t.try_to_bytes().is_err());
        assert!(Tree::from_bytes(b"{").is_err());
        assert!(Tree::from_bytes(br#"{"nodes":[{"name":"\\q","type":"file"}]}"#).is_err());
        let (id, bytes) = back.encode().unwrap();
        assert_eq!(id.id(), Id::hash(&bytes));
    }

    fn arb_node() -> impl Strategy<Value = Node> {
        (
            proptest::collection::vec(any::<u8>(), 0..24),
            proptest::collection::vec(any::<u8>(), 0..24),
            any::<u32>(),
            any::<(u32, u32, u64, u64)>(),
            -62_000_000_000i64..250_000_000_000i64,
            0u32..1_000_000_000,
            -50_400i32..50_400,
            proptest::option::of(proptest::collection::vec(any::<[u8; 32]>(), 0..3)),
            "\\PC{0,8}",
            proptest::collection::vec(
                ("[a-z.]{1,8}", proptest::collection::vec(any::<u8>(), 0..8)),
                0..3,
            ),
        )
            .prop_map(
                |(
                    name,
                    target,
                    mode,
                    (uid, gid, size, inode),
                    secs,
                    nanos,
                    off,
                    content,
                    user,
                    xattrs,
                )| {
                    let off = chrono::FixedOffset::east_opt(off / 60 * 60).unwrap();
                    let t = chrono::DateTime::from_timestamp(secs, nanos)
                        .unwrap()
                        .with_timezone(&off);
                    let mut n = Node::new(name, NodeType::from_go_mode(mode));
                    n.mode = mode;
                    n.mtime = t;
                    n.atime = t;
                    n.ctime = t;
                    n.uid = uid;
                    n.gid = gid;
                    n.size = size;
                    n.inode = inode;
                    n.user = user;
                    n.link_target = target;
                    n.content = content.map(|c| c.into_iter().map(|b| BlobId(Id(b))).collect());
                    n.extended_attributes = xattrs
                        .into_iter()
                        .map(|(name, value)| ExtendedAttribute { name, value })
                        .collect();
                    n
                },
            )
    }

    proptest! {
        #[test]
        fn node_json_roundtrip(node in arb_node()) {
            let bytes = node.to_json_bytes().unwrap();
            let back: Node = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&back, &node);
            prop_assert_eq!(back.to_json_bytes().unwrap(), bytes);
        }

        #[test]
        fn tree_roundtrip(nodes in proptest::collection::vec(arb_node(), 0..6)) {
            let mut tree = Tree { nodes };
            tree.sort();
            tree.nodes.dedup_by(|a, b| a.name == b.name);
            let bytes = tree.try_to_bytes().unwrap();
            let back = Tree::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&back, &tree);
            prop_assert_eq!(back.to_bytes(), bytes);
        }
    }
}
