//! Go `os.FileMode` bits, which restic stores in `Node.mode`.

/// `os.ModeDir`
pub const MODE_DIR: u32 = 1 << 31;
/// `os.ModeAppend`
pub const MODE_APPEND: u32 = 1 << 30;
/// `os.ModeExclusive`
pub const MODE_EXCLUSIVE: u32 = 1 << 29;
/// `os.ModeTemporary`
pub const MODE_TEMPORARY: u32 = 1 << 28;
/// `os.ModeSymlink`
pub const MODE_SYMLINK: u32 = 1 << 27;
/// `os.ModeDevice`
pub const MODE_DEVICE: u32 = 1 << 26;
/// `os.ModeNamedPipe`
pub const MODE_NAMED_PIPE: u32 = 1 << 25;
/// `os.ModeSocket`
pub const MODE_SOCKET: u32 = 1 << 24;
/// `os.ModeSetuid`
pub const MODE_SETUID: u32 = 1 << 23;
/// `os.ModeSetgid`
pub const MODE_SETGID: u32 = 1 << 22;
/// `os.ModeCharDevice`
pub const MODE_CHAR_DEVICE: u32 = 1 << 21;
/// `os.ModeSticky`
pub const MODE_STICKY: u32 = 1 << 20;
/// `os.ModeIrregular`
pub const MODE_IRREGULAR: u32 = 1 << 19;
/// `os.ModePerm`
pub const MODE_PERM: u32 = 0o777;
/// `os.ModeType`
pub const MODE_TYPE: u32 = MODE_DIR
    | MODE_SYMLINK
    | MODE_NAMED_PIPE
    | MODE_SOCKET
    | MODE_DEVICE
    | MODE_CHAR_DEVICE
    | MODE_IRREGULAR;
/// The bits restic keeps: `ModePerm | ModeType | ModeSetuid | ModeSetgid | ModeSticky`.
pub const MODE_STORED_MASK: u32 = MODE_PERM | MODE_TYPE | MODE_SETUID | MODE_SETGID | MODE_STICKY;

const S_IFMT: u32 = 0o170000;
const S_IFSOCK: u32 = 0o140000;
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const S_IFBLK: u32 = 0o060000;
const S_IFDIR: u32 = 0o040000;
const S_IFCHR: u32 = 0o020000;
const S_IFIFO: u32 = 0o010000;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;

/// Converts a Unix `st_mode` to the Go `FileMode` restic stores (already
/// masked with [`MODE_STORED_MASK`]).
pub fn go_mode_from_unix(st_mode: u32) -> u32 {
    let mut m = st_mode & MODE_PERM;
    m |= match st_mode & S_IFMT {
        S_IFBLK => MODE_DEVICE,
        S_IFCHR => MODE_DEVICE | MODE_CHAR_DEVICE,
        S_IFDIR => MODE_DIR,
        S_IFIFO => MODE_NAMED_PIPE,
        S_IFLNK => MODE_SYMLINK,
        S_IFSOCK => MODE_SOCKET,
        S_IFREG => 0,
        _ => MODE_IRREGULAR,
    };
    if st_mode & S_ISUID != 0 {
        m |= MODE_SETUID;
    }
    if st_mode & S_ISGID != 0 {
        m |= MODE_SETGID;
    }
    if st_mode & S_ISVTX != 0 {
        m |= MODE_STICKY;
    }
    m
}

/// The Unix permission bits (incl. setuid/setgid/sticky) of a Go `FileMode`,
/// suitable for `chmod`.
pub fn unix_perm_from_go(mode: u32) -> u32 {
    let mut p = mode & MODE_PERM;
    if mode & MODE_SETUID != 0 {
        p |= S_ISUID;
    }
    if mode & MODE_SETGID != 0 {
        p |= S_ISGID;
    }
    if mode & MODE_STICKY != 0 {
        p |= S_ISVTX;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(go_mode_from_unix(0o100644), 0o644);
        assert_eq!(go_mode_from_unix(0o040755), MODE_DIR | 0o755);
        // design.rst symlink example: 134218239
        assert_eq!(go_mode_from_unix(0o120777), 134_218_239);
        assert_eq!(
            go_mode_from_unix(0o020620),
            MODE_DEVICE | MODE_CHAR_DEVICE | 0o620
        );
        assert_eq!(go_mode_from_unix(0o104755), MODE_SETUID | 0o755);
        assert_eq!(go_mode_from_unix(0o041777), MODE_DIR | MODE_STICKY | 0o777);
        for st in [0o106755u32, 0o043777, 0o100000, 0o102644] {
            assert_eq!(unix_perm_from_go(go_mode_from_unix(st)), st & 0o7777);
        }
    }
}
