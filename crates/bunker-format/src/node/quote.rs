//! Go's `strconv.Quote` / `strconv.Unquote` for double-quoted strings, over
//! raw bytes. restic stores node names as `Quote(name)` without the outer
//! quotes, which makes arbitrary (non-UTF-8) Unix names representable in JSON.
//!
//! Printability follows Go's `strconv.IsPrint` (letters, marks, numbers,
//! punctuation, symbols and ASCII space) using Unicode 15.0 tables, the
//! version of Go 1.21 and later. Names with runes that an older Go considers
//! unassigned may be quoted differently by restic builds using an older Go;
//! both forms decode to the same name.

use super::isprint::PRINTABLE_RANGES;
use crate::gojson::decode_rune;

const LOWER_HEX: &[u8; 16] = b"0123456789abcdef";

/// Go's `strconv.IsPrint`.
pub fn is_print(c: char) -> bool {
    let r = c as u32;
    if r < 0x80 {
        return (0x20..0x7f).contains(&r);
    }
    PRINTABLE_RANGES
        .binary_search_by(|&(lo, hi)| {
            if hi < r {
                std::cmp::Ordering::Less
            } else if lo > r {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

fn push_hex(out: &mut String, v: u32, digits: u32) {
    for i in (0..digits).rev() {
        out.push(LOWER_HEX[((v >> (4 * i)) & 0xf) as usize] as char);
    }
}

/// `strconv.Quote(s)` without the surrounding quotes.
pub fn go_quote_inner(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    let mut i = 0;
    while i < s.len() {
        let Some((c, width)) = decode_rune(&s[i..]) else {
            out.push_str("\\x");
            push_hex(&mut out, u32::from(s[i]), 2);
            i += 1;
            continue;
        };
        i += width;
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            _ if is_print(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            _ if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str("\\x");
                push_hex(&mut out, c as u32, 2);
            }
            _ if (c as u32) < 0x10000 => {
                out.push_str("\\u");
                push_hex(&mut out, c as u32, 4);
            }
            _ => {
                out.push_str("\\U");
                push_hex(&mut out, c as u32, 8);
            }
        }
    }
    out
}

/// `strconv.Quote(s)` including the quotes.
pub fn go_quote(s: &[u8]) -> String {
    format!("\"{}\"", go_quote_inner(s))
}

/// Why [`go_unquote_inner`] rejected its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnquoteError(pub String);

impl std::fmt::Display for UnquoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid Go-quoted string {:?}", self.0)
    }
}

fn unhex(b: u8) -> Option<u32> {
    (b as char).to_digit(16)
}

/// `strconv.Unquote("\"" + s + "\"")`: the raw bytes `s` stands for.
pub fn go_unquote_inner(s: &str) -> Result<Vec<u8>, UnquoteError> {
    let err = || UnquoteError(s.to_string());
    if !s.contains('\\') && !s.contains('\n') && !s.contains('"') {
        return Ok(s.as_bytes().to_vec());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\n' => return Err(err()),
            b'\\' => {}
            _ => {
                out.push(c);
                i += 1;
                continue;
            }
        }
        let esc = *b.get(i + 1).ok_or_else(err)?;
        i += 2;
        match esc {
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'\\' => out.push(b'\\'),
            b'"' => out.push(b'"'),
            b'x' | b'u' | b'U' => {
                let n = match esc {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let digits = b.get(i..i + n).ok_or_else(err)?;
                let mut v: u32 = 0;
                for &d in digits {
                    v = (v << 4) | unhex(d).ok_or_else(err)?;
                }
                i += n;
                if esc == b'x' {
                    out.push(v as u8);
                } else {
                    let ch = char::from_u32(v).ok_or_else(err)?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
            }
            b'0'..=b'7' => {
                let digits = b.get(i..i + 2).ok_or_else(err)?;
                let mut v = u32::from(esc - b'0');
                for &d in digits {
                    if !(b'0'..=b'7').contains(&d) {
                        return Err(err());
                    }
                    v = (v << 3) | u32::from(d - b'0');
                }
                i += 2;
                if v > 255 {
                    return Err(err());
                }
                out.push(v as u8);
            }
            _ => return Err(err()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn go_examples() {
        assert_eq!(go_quote(b"hello"), "\"hello\"");
        assert_eq!(
            go_quote_inner("a\"b\\c\n\t\u{7}\u{0}\u{7f}".as_bytes()),
            r#"a\"b\\c\n\t\a\x00\x7f"#
        );
        assert_eq!(go_quote_inner(b"\xff\xfeok"), r"\xff\xfeok");
        assert_eq!(go_quote_inner("é 中 😀".as_bytes()), "é 中 😀");
        assert_eq!(
            go_quote_inner("\u{a0}\u{ad}\u{200b}\u{feff}\u{e000}".as_bytes()),
            r"\u00a0\u00ad\u200b\ufeff\ue000"
        );
        assert_eq!(
            go_quote_inner("\u{10ffff}\u{f0000}".as_bytes()),
            r"\U0010ffff\U000f0000"
        );
        assert_eq!(go_quote_inner("\u{85}".as_bytes()), r"\u0085");
        assert_eq!(go_quote_inner("\u{fffd}".as_bytes()), "\u{fffd}");
        assert_eq!(go_unquote_inner(r"\x41\101\u00e9\U0001F600\'").ok(), None);
        assert_eq!(
            go_unquote_inner(r"\x41\101\u00e9\U0001F600").unwrap(),
            "AAé😀".as_bytes()
        );
        for bad in [r"\", r"\q", r"\x4", r"\777", "a\"b", "a\nb", r"\ud800"] {
            assert!(go_unquote_inner(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vectors_from_go() {
        // Lines of `hex(input) TAB strconv.Quote(input)` printed by Go.
        let data = include_str!("testdata/go_quote_vectors.txt");
        let mut n = 0;
        for line in data.lines().filter(|l| !l.is_empty()) {
            let (h, q) = line.split_once('\t').unwrap();
            let input = hex::decode(h).unwrap();
            assert_eq!(go_quote(&input), q, "input {h}");
            let inner = &q[1..q.len() - 1];
            assert_eq!(go_unquote_inner(inner).unwrap(), input);
            n += 1;
        }
        assert!(n >= 100);
    }

    proptest! {
        #[test]
        fn roundtrip_bytes(s in proptest::collection::vec(any::<u8>(), 0..64)) {
            let q = go_quote_inner(&s);
            prop_assert_eq!(go_unquote_inner(&q).unwrap(), s);
        }

        #[test]
        fn roundtrip_strings(s in "\\PC*") {
            let q = go_quote_inner(s.as_bytes());
            prop_assert_eq!(go_unquote_inner(&q).unwrap(), s.as_bytes());
        }
    }
}
