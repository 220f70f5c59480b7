//! Deterministic input mutations: bit flips, interesting bytes and
//! integers, insertions, deletions, duplications, truncation, splicing with
//! another seed, and JSON tokens (most decoders read JSON).

/// SplitMix64: small, fast, and the same sequence on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

const BYTES: &[u8] = &[
    0, 1, 2, 0x7f, 0x80, 0xff, b'"', b'{', b'}', b'[', b']', b',', b':', b'-', b'0', b'9', b'e',
    b'\\', b'.', b'/',
];

const TOKENS: &[&str] = &[
    "null",
    "true",
    "false",
    "-1",
    "0",
    "1e999",
    "-1e999",
    "1.5",
    "18446744073709551616",
    "4294967296",
    "9223372036854775807",
    "\"\"",
    "{}",
    "[]",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"nodes\"",
    "\"content\"",
    "\"subtree\"",
    "\"type\"",
    "\"dir\"",
    "\"file\"",
    "\"packs\"",
    "\"blobs\"",
    "\"length\"",
    "\"offset\"",
    "\"uncompressed_length\"",
    "\"kdf\"",
    "\"N\"",
    "\"r\"",
    "\"p\"",
    "\"salt\"",
    "\"data\"",
    "\"time\"",
    "\"tree\"",
    "\"mtime\"",
    "\"mode\"",
    "\"extended_attributes\"",
    "\"0001-01-01T00:00:00Z\"",
    "\"9999-12-31T23:59:59.999999999Z\"",
    "\"-0001-01-01T00:00:00Z\"",
    "\"2020-02-30T25:61:61+99:99\"",
];

const INTS: &[u32] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    u32::MAX,
];

/// One to four mutations of `base` (another corpus entry may be spliced
/// in), cut to `max_len` bytes.
pub fn mutate(base: &[u8], corpus: &[Vec<u8>], rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let mut d = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(10) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] = BYTES[rng.below(BYTES.len())];
            }
            2 => {
                let at = rng.below(d.len() + 1);
                let n = 1 + rng.below(8);
                let ins: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                d.splice(at..at, ins);
            }
            3 if !d.is_empty() => {
                let a = rng.below(d.len());
                let b = (a + 1 + rng.below(16)).min(d.len());
                d.drain(a..b);
            }
            4 if !d.is_empty() => {
                let a = rng.below(d.len());
                let b = (a + 1 + rng.below(64)).min(d.len());
                let at = rng.below(d.len() + 1);
                let copy = d[a..b].to_vec();
                d.splice(at..at, copy);
            }
            5 if !d.is_empty() => {
                let n = rng.below(d.len());
                d.truncate(n);
            }
            6 => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + 1 + rng.below(256)).min(other.len());
                    let at = rng.below(d.len() + 1);
                    d.splice(at..at, other[a..b].iter().copied());
                }
            }
            7 | 8 => {
                let tok = TOKENS[rng.below(TOKENS.len())].as_bytes();
                let at = rng.below(d.len() + 1);
                if rng.below(2) == 0 || d.is_empty() {
                    d.splice(at..at, tok.iter().copied());
                } else {
                    // Replace a run of bytes: a value becomes another.
                    let end = (at + 1 + rng.below(12)).min(d.len());
                    d.splice(at..end, tok.iter().copied());
                }
            }
            _ if d.len() >= 4 => {
                let i = rng.below(d.len() - 3);
                let v = INTS[rng.below(INTS.len())];
                let bytes = if rng.below(2) == 0 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                };
                d[i..i + 4].copy_from_slice(&bytes);
            }
            _ => d.push(rng.next_u64() as u8),
        }
    }
    d.truncate(max_len);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_mutations() {
        let corpus = vec![b"{\"a\":1}".to_vec(), b"[1,2,3]".to_vec()];
        let run = |seed| {
            let mut r = Rng::new(seed);
            (0..50)
                .map(|_| mutate(&corpus[0], &corpus, &mut r, 1024))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
