//! POSIX ACL extended attributes (`system.posix_acl_access`,
//! `system.posix_acl_default`) in the text form restic's `dump` writes into
//! `SCHILY.acl.*` PAX records: `user::rw-,group::r--,other::r--`.

const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;

/// The text form of a Linux ACL xattr: a little-endian u32 version, then
/// 8-byte entries (u16 tag, u16 permissions, u32 id); a trailing partial
/// entry is ignored and a value shorter than the version gives "", as in
/// restic's decoder.
pub fn to_text(xattr: &[u8]) -> String {
    if xattr.len() < 4 {
        return String::new();
    }
    let mut parts = Vec::new();
    for e in xattr[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        let perm = u16::from_le_bytes([e[2], e[3]]);
        let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let who = match tag {
            USER_OBJ => "user::".to_string(),
            GROUP_OBJ => "group::".to_string(),
            MASK => "mask::".to_string(),
            OTHER => "other::".to_string(),
            USER => format!("user:{id}:"),
            GROUP => format!("group:{id}:"),
            _ => format!("?:{id}:"),
        };
        let bit = |b: u16, c: char| if perm & b != 0 { c } else { '-' };
        parts.push(format!(
            "{who}{}{}{}",
            bit(4, 'r'),
            bit(2, 'w'),
            bit(1, 'x')
        ));
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: u16, perm: u16, id: u32) -> Vec<u8> {
        let mut v = tag.to_le_bytes().to_vec();
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
        v
    }

    #[test]
    fn acl_text_as_restic_writes_it() {
        let mut x = 2u32.to_le_bytes().to_vec();
        x.extend(entry(USER_OBJ, 6, u32::MAX));
        x.extend(entry(USER, 7, 1000));
        x.extend(entry(GROUP_OBJ, 4, u32::MAX));
        x.extend(entry(MASK, 5, u32::MAX));
        x.extend(entry(OTHER, 0, u32::MAX));
        x.extend([1, 2, 3]); // partial entry: ignored
        assert_eq!(
            to_text(&x),
            "user::rw-,user:1000:rwx,group::r--,mask::r-x,other::---"
        );
        assert_eq!(to_text(&[1, 0]), "");
        assert_eq!(to_text(&2u32.to_le_bytes()), "");
    }
}
