use super::gorand::GoRand;
use super::*;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// restic/chunker's test polynomial.
const TEST_POL: Polynomial = Polynomial(0x3DA3358B4DC173);

/// (length, cut fingerprint, SHA-256) from restic/chunker's `chunks1`: 32 MiB
/// of Go `math/rand` data seeded with 23, default parameters.
const CHUNKS1: &[(usize, u64, &str)] = &[
    (
        2163460,
        0x000b98d4cdf00000,
        "4b94cb2cf293855ea43bf766731c74969b91aa6bf3c078719aabdd19860d590d",
    ),
    (
        643703,
        0x000d4e8364d00000,
        "5727a63c0964f365ab8ed2ccf604912f2ea7be29759a2b53ede4d6841e397407",
    ),
    (
        1528956,
        0x0015a25c2ef00000,
        "a73759636a1e7a2758767791c69e81b69fb49236c6929e5d1b654e06e37674ba",
    ),
    (
        1955808,
        0x00102a8242e00000,
        "c955fb059409b25f07e5ae09defbbc2aadf117c97a3724e06ad4abd2787e6824",
    ),
    (
        2222372,
        0x00045da878000000,
        "6ba5e9f7e1b310722be3627716cf469be941f7f3e39a4c3bcefea492ec31ee56",
    ),
    (
        2538687,
        0x00198a8179900000,
        "8687937412f654b5cfe4a82b08f28393a0c040f77c6f95e26742c2fc4254bfde",
    ),
    (
        609606,
        0x001d4e8d17100000,
        "5da820742ff5feb3369112938d3095785487456f65a8efc4b96dac4be7ebb259",
    ),
    (
        1205738,
        0x000a7204dd600000,
        "cc70d8fad5472beb031b1aca356bcab86c7368f40faa24fe5f8922c6c268c299",
    ),
    (
        959742,
        0x00183e71e1400000,
        "4065bdd778f95676c92b38ac265d361f81bff17d76e5d9452cf985a2ea5a4e39",
    ),
    (
        4036109,
        0x001fec043c700000,
        "b9cf166e75200eb4993fc9b6e22300a6790c75e6b0fc8f3f29b68a752d42f275",
    ),
    (
        1525894,
        0x000b1574b1500000,
        "2f238180e4ca1f7520a05f3d6059233926341090f9236ce677690c1823eccab3",
    ),
    (
        1352720,
        0x00018965f2e00000,
        "afd12f13286a3901430de816e62b85cc62468c059295ce5888b76b3af9028d84",
    ),
    (
        811884,
        0x00155628aa100000,
        "42d0cdb1ee7c48e552705d18e061abb70ae7957027db8ae8db37ec756472a70a",
    ),
    (
        1282314,
        0x001909a0a1400000,
        "819721c2457426eb4f4c7565050c44c32076a56fa9b4515a1c7796441730eb58",
    ),
    (
        1318021,
        0x001cceb980000000,
        "842eb53543db55bacac5e25cb91e43cc2e310fe5f9acc1aee86bdf5e91389374",
    ),
    (
        948640,
        0x0011f7a470a00000,
        "b8e36bf7019bb96ac3fb7867659d2167d9d3b3148c09fe0de45850b8fe577185",
    ),
    (
        645464,
        0x00030ce2d9400000,
        "5584bd27982191c3329f01ed846bfd266e96548dfa87018f745c33cfc240211d",
    ),
    (
        533758,
        0x0004435c53c00000,
        "4da778a25b72a9a0d53529eccfe2e5865a789116cb1800f470d8df685a8ab05d",
    ),
    (
        1128303,
        0x0000c48517800000,
        "08c6b0b38095b348d80300f0be4c5184d2744a17147c2cba5cc4315abf4c048f",
    ),
    (
        800374,
        0x000968473f900000,
        "820284d2c8fd243429674c996d8eb8d3450cbc32421f43113e980f516282c7bf",
    ),
    (
        2453512,
        0x001e197c92600000,
        "5fa870ed107c67704258e5e50abe67509fb73562caf77caa843b5f243425d853",
    ),
    (
        2651975,
        0x000ae6c868000000,
        "181347d2bbec32bef77ad5e9001e6af80f6abcf3576549384d334ee00c1988d8",
    ),
    (
        237392,
        0x0000000000000001,
        "fcd567f5d866357a8e299fd5b2359bb2c8157c30395229c4e9b0a353944a7978",
    ),
];

/// `chunks3`: the same data with 19 average bits (first chunks only).
const CHUNKS3_PREFIX: &[(usize, u64)] = &[
    (1491586, 0x00023e586ea80000),
    (671874, 0x000b98d4cdf00000),
    (643703, 0x000d4e8364d00000),
    (1284146, 0x0012b527e4780000),
    (823366, 0x000d1d6752180000),
];

/// `chunks4`: boundaries 16 MiB / 32 MiB.
const CHUNKS4: &[(usize, u64, &str)] = &[
    (
        17864181,
        0x001fec043c700000,
        "4a43d4eccaa3b88514f54d3becddc6ef5e06fbb2de8161b0129888dbae4430a7",
    ),
    (
        15690251,
        0x0000000000000001,
        "4ca32142da6f9130dc9a5d0df82a3c9e359cc4f1f480f4e52042ec0e8ecd3cc0",
    ),
];

fn test_data() -> &'static [u8] {
    static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DATA.get_or_init(|| GoRand::bytes(23, 32 * 1024 * 1024))
}

/// Splits `data` by feeding `block`-sized pieces; returns (len, cut) pairs,
/// with the final partial chunk reported with the digest restic reports (the
/// running digest), which the vectors mark as 1 for this input.
fn split(mut chunker: Chunker, data: &[u8], block: usize) -> Vec<(usize, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let end = (pos + block).min(data.len());
        let mut piece = &data[pos..end];
        while let Some((n, cut)) = chunker.next_boundary_with_cut(piece) {
            cur.extend_from_slice(&piece[..n]);
            out.push((cur.len(), cut, std::mem::take(&mut cur)));
            piece = &piece[n..];
        }
        cur.extend_from_slice(piece);
        pos = end;
    }
    if !cur.is_empty() {
        out.push((cur.len(), chunker.digest, cur));
    }
    out
}

fn check(got: &[(usize, u64, Vec<u8>)], want: &[(usize, u64, &str)]) {
    assert_eq!(got.len(), want.len());
    for (i, ((len, cut, data), (wlen, wcut, wsha))) in got.iter().zip(want).enumerate() {
        assert_eq!(len, wlen, "chunk {i} length");
        assert_eq!(cut, wcut, "chunk {i} cut fingerprint");
        assert_eq!(hex::encode(Sha256::digest(data)), *wsha, "chunk {i} digest");
    }
}

#[test]
fn go_rand_matches_go() {
    // Printed by Go: rand.New(rand.NewSource(23)).Uint32() three times.
    let mut r = GoRand::new(23);
    assert_eq!(
        [r.uint32(), r.uint32(), r.uint32()],
        [3487928015, 2356368465, 953638426]
    );
    assert_eq!(&test_data()[..4], &3487928015u32.to_le_bytes());
}

#[test]
fn restic_vectors_default_params() {
    let got = split(Chunker::new(TEST_POL), test_data(), 512 * 1024);
    check(&got, CHUNKS1);
}

#[test]
fn restic_vectors_odd_block_sizes() {
    for block in [1 << 20, 65_537, 3_000_001] {
        let got = split(Chunker::new(TEST_POL), test_data(), block);
        check(&got, CHUNKS1);
    }
}

#[test]
fn restic_vectors_custom_params() {
    let got = split(
        Chunker::with_params(TEST_POL, MIN_SIZE, MAX_SIZE, 19),
        test_data(),
        1 << 20,
    );
    for (i, (g, w)) in got.iter().zip(CHUNKS3_PREFIX).enumerate() {
        assert_eq!((g.0, g.1), *w, "chunk {i}");
    }
    assert_eq!(got.len(), 31);
    let got = split(
        Chunker::with_params(TEST_POL, 16 * 1024 * 1024, 32 * 1024 * 1024, 20),
        test_data(),
        1 << 20,
    );
    check(&got, CHUNKS4);
}

#[test]
fn null_bytes_cut_at_min_size() {
    let data = vec![0u8; 4 * MIN_SIZE];
    let chunks: Vec<Vec<u8>> = ChunkIter::new(&data[..], Chunker::new(TEST_POL))
        .collect::<io::Result<_>>()
        .unwrap();
    assert_eq!(chunks.len(), 4);
    for c in &chunks {
        assert_eq!(c.len(), MIN_SIZE);
        assert_eq!(
            hex::encode(Sha256::digest(c)),
            "07854d2fef297a06ba81685e660c332de36d5d18d546927d30daad6d7fda1541"
        );
    }
}

#[test]
fn chunk_iter_matches_vectors_and_handles_empty() {
    let chunks: Vec<Vec<u8>> = ChunkIter::new(test_data(), Chunker::new(TEST_POL))
        .collect::<io::Result<_>>()
        .unwrap();
    let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
    let want: Vec<usize> = CHUNKS1.iter().map(|c| c.0).collect();
    assert_eq!(lens, want);
    assert_eq!(ChunkIter::new(&[][..], Chunker::new(TEST_POL)).count(), 0);
    let small: Vec<_> = ChunkIter::new(&b"hello"[..], Chunker::new(TEST_POL)).collect();
    assert_eq!(small.len(), 1);
    assert_eq!(small[0].as_ref().unwrap(), b"hello");
}

#[test]
fn max_size_cut() {
    // Whatever the content, no chunk may exceed MAX_SIZE.
    let data = vec![0xffu8; 3 * MAX_SIZE];
    for c in ChunkIter::new(&data[..], Chunker::new(TEST_POL)) {
        let c = c.unwrap();
        assert!(c.len() <= MAX_SIZE);
    }
}

#[test]
fn polynomial_basics() {
    assert_eq!(TEST_POL.deg(), 53);
    assert!(TEST_POL.is_irreducible());
    // x^2 + x + 1 is irreducible, x^2 + 1 = (x+1)^2 is not.
    assert!(Polynomial(0b111).is_irreducible());
    assert!(!Polynomial(0b101).is_irreducible());
    // restic/chunker's polynomials_test irreducibility vectors
    let vectors: [(u64, bool); 14] = [
        (0x38f1e565e288df, false),
        (0x3DA3358B4DC173, true),
        (0x30a8295b9d5c91, false),
        (0x255f4350b962cb, false),
        (0x267f776110a235, false),
        (0x2f4dae10d41227, false),
        (0x2482734cacca49, true),
        (0x312daf4b284899, false),
        (0x29dfb6553d01d1, false),
        (0x3548245eb26257, false),
        (0x3199e7ef4211b3, false),
        (0x362f39017dae8b, false),
        (0x2026a59efb219b, false),
        (0x3143d0464b3299, false),
    ];
    for (p, irred) in vectors {
        assert_eq!(Polynomial(p).is_irreducible(), irred, "{p:#x}");
    }
    let p = Polynomial::random_irreducible().unwrap();
    assert_eq!(p.deg(), 53);
    assert!(p.is_irreducible());
    assert_eq!(Polynomial::from_hex(&p.to_hex()).unwrap(), p);
    assert_eq!(
        serde_json::to_string(&TEST_POL).unwrap(),
        "\"3da3358b4dc173\""
    );
    assert!(Chunker::try_new(Polynomial(0x1ff_ffff_ffff_ffff)).is_err());
}

#[test]
fn polynomial_mod_and_mulmod() {
    // from restic/chunker polynomials_test.go
    assert_eq!(
        Polynomial(0x1230)
            .mul_mod(Polynomial(0x230), Polynomial(0x55))
            .0,
        0x22
    );
    assert_eq!(
        Polynomial(0x0eae8c07dbbb3026)
            .mul_mod(Polynomial(0xd5d6db9de04771de), Polynomial(0xdd2bda3b77c9))
            .0,
        0x425ae8595b7a
    );
    assert_eq!(Polynomial(10).modulo(Polynomial(50)).0, 10);
    assert_eq!(Polynomial(0b101101001).modulo(Polynomial(0b1010)).0, 1);
    assert_eq!(Polynomial(1 << 63).modulo(Polynomial(1 << 63)).0, 0);
    assert_eq!(Polynomial(0b1100001111).modulo(Polynomial(0b10011)).0, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn boundaries_independent_of_split(seed in any::<u64>(), blocks in proptest::collection::vec(1usize..400_000, 1..20)) {
        let data = GoRand::bytes(seed as i64, 6 * 1024 * 1024);
        let mut reference = Vec::new();
        {
            let mut c = Chunker::new(TEST_POL);
            let mut pos = 0;
            while let Some(n) = c.next_boundary(&data[pos..]) {
                pos += n;
                reference.push(pos);
            }
        }
        let mut c = Chunker::new(TEST_POL);
        let mut got = Vec::new();
        let mut pos = 0;
        let mut bi = 0;
        while pos < data.len() {
            let end = (pos + blocks[bi % blocks.len()]).min(data.len());
            bi += 1;
            let mut p = pos;
            while let Some(n) = c.next_boundary(&data[p..end]) {
                p += n;
                got.push(p);
            }
            pos = end;
        }
        prop_assert_eq!(got, reference);
    }
}

/// Throughput of the boundary search: `cargo test -p bunker-format --release
/// -- --ignored --nocapture chunker_throughput`.
#[test]
#[ignore]
fn chunker_throughput() {
    let data = test_data();
    let mut c = Chunker::new(TEST_POL);
    let start = std::time::Instant::now();
    let rounds = 8;
    let mut cuts = 0;
    for _ in 0..rounds {
        let mut pos = 0;
        while let Some(n) = c.next_boundary(&data[pos..]) {
            pos += n;
            cuts += 1;
        }
        c.reset();
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = (rounds * data.len()) as f64 / 1e6;
    println!("chunker: {:.0} MB/s ({cuts} cuts)", mb / secs);
}

#[test]
fn lane_scan_matches_byte_by_byte() {
    // Small average size and minimum: many cuts, in every lane of long
    // regions and in the serial remainder. Feeding one byte at a time
    // always takes the single-state path.
    let data = GoRand::bytes(7, 3 * 1024 * 1024);
    let chunker = Chunker::with_params(TEST_POL, 64, 1 << 20, 16);
    let whole = split(chunker.clone(), &data, data.len());
    let bytewise = split(chunker.clone(), &data[..1 << 20], 1);
    assert!(bytewise.len() > 8);
    let cuts = |c: &[(usize, u64, Vec<u8>)], n: usize| -> Vec<(usize, u64)> {
        c[..n].iter().map(|c| (c.0, c.1)).collect()
    };
    assert_eq!(
        cuts(&whole, bytewise.len() - 1),
        cuts(&bytewise, bytewise.len() - 1)
    );
    // Blocks shorter and longer than the window and than a lane region:
    // the outgoing bytes come from the ring, from the block, or from both,
    // and the ring is rebuilt from the block between calls.
    for block in [63, 64, 65, 1000, 40_000, 100_003] {
        let got = split(chunker.clone(), &data, block);
        assert_eq!(
            cuts(&got, got.len()),
            cuts(&whole, whole.len()),
            "block {block}"
        );
    }
}
