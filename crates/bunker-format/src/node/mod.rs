//! Tree nodes and trees, serialized exactly like restic (`internal/data/node.go`,
//! `tree.go`): Go `encoding/json` output, names `strconv.Quote`d, invalid
//! UTF-8 link targets mirrored into `linktarget_raw`.

mod isprint;
mod mode;
mod quote;
mod tree;

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use chrono::{DateTime, FixedOffset};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

pub use mode::*;
pub use quote::{go_quote, go_quote_inner, go_unquote_inner, is_print, UnquoteError};
pub use tree::Tree;

use crate::gotime;
use crate::id::{BlobId, TreeId};

/// The kind of a node (`type` in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    File,
    Dir,
    Symlink,
    Dev,
    #[serde(rename = "chardev")]
    CharDev,
    Fifo,
    Socket,
    Irregular,
}

impl NodeType {
    /// The node type a Go `FileMode` describes.
    pub fn from_go_mode(mode: u32) -> NodeType {
        if mode & MODE_DIR != 0 {
            NodeType::Dir
        } else if mode & MODE_SYMLINK != 0 {
            NodeType::Symlink
        } else if mode & MODE_DEVICE != 0 {
            if mode & MODE_CHAR_DEVICE != 0 {
                NodeType::CharDev
            } else {
                NodeType::Dev
            }
        } else if mode & MODE_NAMED_PIPE != 0 {
            NodeType::Fifo
        } else if mode & MODE_SOCKET != 0 {
            NodeType::Socket
        } else if mode & MODE_IRREGULAR != 0 {
            NodeType::Irregular
        } else {
            NodeType::File
        }
    }

    /// The Go `FileMode` type bits of this node type.
    pub fn go_mode_bits(&self) -> u32 {
        match self {
            NodeType::File => 0,
            NodeType::Dir => MODE_DIR,
            NodeType::Symlink => MODE_SYMLINK,
            NodeType::Dev => MODE_DEVICE,
            NodeType::CharDev => MODE_DEVICE | MODE_CHAR_DEVICE,
            NodeType::Fifo => MODE_NAMED_PIPE,
            NodeType::Socket => MODE_SOCKET,
            NodeType::Irregular => MODE_IRREGULAR,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            NodeType::File => "file",
            NodeType::Dir => "dir",
            NodeType::Symlink => "symlink",
            NodeType::Dev => "dev",
            NodeType::CharDev => "chardev",
            NodeType::Fifo => "fifo",
            NodeType::Socket => "socket",
            NodeType::Irregular => "irregular",
        }
    }
}

impl fmt::Display for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An extended attribute (`{"name":…,"value":base64}`). An empty value is
/// written as `""`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtendedAttribute {
    pub name: String,
    pub value: Vec<u8>,
}

/// A JSON value kept verbatim (restic's `json.RawMessage`), used for
/// `generic_attributes` which bunker passes through untouched.
#[derive(Clone, Debug)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Validates `json` as one JSON value.
    pub fn new(json: String) -> Result<RawJson, serde_json::Error> {
        RawValue::from_string(json).map(RawJson)
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson {}

/// One entry of a tree: file, directory, symlink, device, …
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Raw name bytes (Unix names need not be UTF-8).
    pub name: Vec<u8>,
    pub node_type: NodeType,
    /// Go `os.FileMode` (see [`go_mode_from_unix`]); 0 is omitted.
    pub mode: u32,
    pub mtime: DateTime<FixedOffset>,
    pub atime: DateTime<FixedOffset>,
    pub ctime: DateTime<FixedOffset>,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    pub inode: u64,
    /// `st_dev`, only stored for hard links.
    pub device_id: u64,
    pub size: u64,
    pub links: u64,
    /// Raw symlink target bytes.
    pub link_target: Vec<u8>,
    pub extended_attributes: Vec<ExtendedAttribute>,
    pub generic_attributes: BTreeMap<String, RawJson>,
    /// `st_rdev` of device nodes.
    pub device: u64,
    /// Data blobs of a file; `None` is written as `null` (non-files).
    pub content: Option<Vec<BlobId>>,
    /// Tree of a directory.
    pub subtree: Option<TreeId>,
    pub error: String,
}

impl Node {
    /// A node with Go zero times and everything else empty.
    pub fn new(name: impl Into<Vec<u8>>, node_type: NodeType) -> Node {
        let zero = gotime::zero();
        Node {
            name: name.into(),
            node_type,
            mode: 0,
            mtime: zero,
            atime: zero,
            ctime: zero,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            inode: 0,
            device_id: 0,
            size: 0,
            links: 0,
            link_target: Vec::new(),
            extended_attributes: Vec::new(),
            generic_attributes: BTreeMap::new(),
            device: 0,
            content: None,
            subtree: None,
            error: String::new(),
        }
    }

    /// The name for display (invalid UTF-8 replaced).
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// The Unix permission bits (incl. setuid/setgid/sticky).
    pub fn unix_perm(&self) -> u32 {
        unix_perm_from_go(self.mode)
    }

    /// Go-JSON bytes of this node alone (as inside a tree).
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, crate::FormatError> {
        crate::gojson::to_vec(self).map_err(|e| crate::FormatError::json("node", e))
    }
}

struct Ext<'a>(&'a ExtendedAttribute);

impl Serialize for Ext<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ExtendedAttribute", 2)?;
        st.serialize_field("name", &self.0.name)?;
        st.serialize_field(
            "value",
            &base64::engine::general_purpose::STANDARD.encode(&self.0.value),
        )?;
        st.end()
    }
}

struct Exts<'a>(&'a [ExtendedAttribute]);

impl Serialize for Exts<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Ext))
    }
}

struct GoTime<'a>(&'a DateTime<FixedOffset>);

impl Serialize for GoTime<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        gotime::rfc3339::serialize(self.0, s)
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        let mut st = s.serialize_struct("Node", 22)?;
        st.serialize_field("name", &go_quote_inner(&self.name))?;
        st.serialize_field("type", &self.node_type)?;
        if self.mode != 0 {
            st.serialize_field("mode", &self.mode)?;
        }
        st.serialize_field("mtime", &GoTime(&self.mtime))?;
        st.serialize_field("atime", &GoTime(&self.atime))?;
        st.serialize_field("ctime", &GoTime(&self.ctime))?;
        st.serialize_field("uid", &self.uid)?;
        st.serialize_field("gid", &self.gid)?;
        if !self.user.is_empty() {
            st.serialize_field("user", &self.user)?;
        }
        if !self.group.is_empty() {
            st.serialize_field("group", &self.group)?;
        }
        for (name, v) in [
            ("inode", self.inode),
            ("device_id", self.device_id),
            ("size", self.size),
            ("links", self.links),
        ] {
            if v != 0 {
                st.serialize_field(name, &v)?;
            }
        }
        if !self.link_target.is_empty() {
            match std::str::from_utf8(&self.link_target) {
                Ok(t) => st.serialize_field("linktarget", t)?,
                Err(_) => {
                    // Go writes each invalid byte as \ufffd and adds the raw bytes.
                    let mut lit = Vec::with_capacity(self.link_target.len() + 8);
                    crate::gojson::encode_go_string(&self.link_target, &mut lit);
                    let lit = String::from_utf8(lit).map_err(S::Error::custom)?;
                    let raw = RawValue::from_string(lit).map_err(S::Error::custom)?;
                    st.serialize_field("linktarget", &raw)?;
                    st.serialize_field(
                        "linktarget_raw",
                        &base64::engine::general_purpose::STANDARD.encode(&self.link_target),
                    )?;
                }
            }
        }
        if !self.extended_attributes.is_empty() {
            st.serialize_field("extended_attributes", &Exts(&self.extended_attributes))?;
        }
        if !self.generic_attributes.is_empty() {
            let m: BTreeMap<&str, &RawValue> = self
                .generic_attributes
                .iter()
                .map(|(k, v)| (k.as_str(), &*v.0))
                .collect();
            st.serialize_field("generic_attributes", &m)?;
        }
        if self.device != 0 {
            st.serialize_field("device", &self.device)?;
        }
        st.serialize_field("content", &self.content)?;
        if let Some(t) = &self.subtree {
            st.serialize_field("subtree", t)?;
        }
        if !self.error.is_empty() {
            st.serialize_field("error", &self.error)?;
        }
        st.end()
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn b64_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    match Option::<std::borrow::Cow<str>>::deserialize(d)? {
        None => Ok(None),
        Some(s) => base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn go_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
    match Option::<std::borrow::Cow<str>>::deserialize(d)? {
        None => Ok(gotime::zero()),
        Some(s) => gotime::parse(&s).map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize)]
struct ExtRepr {
    #[serde(default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(default, deserialize_with = "b64_opt")]
    value: Option<Vec<u8>>,
}

#[derive(Deserialize)]
struct NodeRepr {
    #[serde(default, deserialize_with = "null_as_default")]
    name: String,
    #[serde(rename = "type")]
    node_type: NodeType,
    #[serde(default)]
    mode: u32,
    #[serde(default = "gotime::zero", deserialize_with = "go_time")]
    mtime: DateTime<FixedOffset>,
    #[serde(default = "gotime::zero", deserialize_with = "go_time")]
    atime: DateTime<FixedOffset>,
    #[serde(default = "gotime::zero", deserialize_with = "go_time")]
    ctime: DateTime<FixedOffset>,
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
    #[serde(default, deserialize_with = "null_as_default")]
    user: String,
    #[serde(default, deserialize_with = "null_as_default")]
    group: String,
    #[serde(default)]
    inode: u64,
    #[serde(default)]
    device_id: u64,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    links: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    linktarget: String,
    #[serde(default, deserialize_with = "b64_opt")]
    linktarget_raw: Option<Vec<u8>>,
    #[serde(default, deserialize_with = "null_as_default")]
    extended_attributes: Vec<ExtRepr>,
    #[serde(default, deserialize_with = "null_as_default")]
    generic_attributes: BTreeMap<String, Box<RawValue>>,
    #[serde(default)]
    device: u64,
    #[serde(default)]
    content: Option<Vec<BlobId>>,
    #[serde(default)]
    subtree: Option<TreeId>,
    #[serde(default, deserialize_with = "null_as_default")]
    error: String,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        let r = NodeRepr::deserialize(d)?;
        let name = go_unquote_inner(&r.name).map_err(serde::de::Error::custom)?;
        let link_target = match r.linktarget_raw {
            Some(raw) => raw,
            None => r.linktarget.into_bytes(),
        };
        Ok(Node {
            name,
            node_type: r.node_type,
            mode: r.mode,
            mtime: r.mtime,
            atime: r.atime,
            ctime: r.ctime,
            uid: r.uid,
            gid: r.gid,
            user: r.user,
            group: r.group,
            inode: r.inode,
            device_id: r.device_id,
            size: r.size,
            links: r.links,
            link_target,
            extended_attributes: r
                .extended_attributes
                .into_iter()
                .map(|e| ExtendedAttribute {
                    name: e.name,
                    value: e.value.unwrap_or_default(),
                })
                .collect(),
            generic_attributes: r
                .generic_attributes
                .into_iter()
                .map(|(k, v)| (k, RawJson(v)))
                .collect(),
            device: r.device,
            content: r.content,
            subtree: r.subtree,
            error: r.error,
        })
    }
}
