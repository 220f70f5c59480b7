//! AES-256-CTR + Poly1305-AES, as restic encrypts everything.
//!
//! Every encrypted object is `IV(16) || AES-256-CTR(plaintext) || MAC(16)`.
//! The IV doubles as the Poly1305-AES nonce: the one-time Poly1305 key is
//! `r || AES-128_k(IV)`; `r` is clamped by Poly1305 itself. The MAC covers the
//! ciphertext only and is verified (in constant time) before decrypting.

use std::fmt;

use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::error::FormatError;

/// Bytes added by [`Key::encrypt`]: IV (16) + MAC (16).
pub const CRYPTO_OVERHEAD: usize = 32;
const IV_SIZE: usize = 16;
const MAC_SIZE: usize = 16;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// A repository master key, or a user key derived from a password.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    encrypt: [u8; 32],
    mac_k: [u8; 16],
    mac_r: [u8; 16],
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(<secret>)")
    }
}

/// The JSON form of a master key inside a key file:
/// `{"mac":{"k":b64,"r":b64},"encrypt":b64}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterKeyJson {
    pub mac: MacKeyJson,
    pub encrypt: String,
}

/// The `mac` member of [`MasterKeyJson`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacKeyJson {
    pub k: String,
    pub r: String,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut out);
    out
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

impl Key {
    /// Builds a key from its three parts.
    pub fn from_parts(encrypt: [u8; 32], mac_k: [u8; 16], mac_r: [u8; 16]) -> Key {
        Key {
            encrypt,
            mac_k,
            mac_r,
        }
    }

    /// A new random master key.
    pub fn random() -> Key {
        loop {
            let k = Key::from_parts(random_bytes(), random_bytes(), random_bytes());
            if k.is_valid() {
                return k;
            }
        }
    }

    /// Splits 64 bytes of KDF output: encryption key (32), then `k` (16), then `r` (16).
    pub fn from_kdf_output(out: &[u8; 64]) -> Key {
        let mut encrypt = [0u8; 32];
        let mut mac_k = [0u8; 16];
        let mut mac_r = [0u8; 16];
        encrypt.copy_from_slice(&out[..32]);
        mac_k.copy_from_slice(&out[32..48]);
        mac_r.copy_from_slice(&out[48..]);
        Key::from_parts(encrypt, mac_k, mac_r)
    }

    /// restic refuses all-zero key parts.
    pub fn is_valid(&self) -> bool {
        self.encrypt.iter().any(|&b| b != 0)
            && self.mac_k.iter().any(|&b| b != 0)
            && self.mac_r.iter().any(|&b| b != 0)
    }

    fn mac(&self, iv: &[u8; IV_SIZE], ciphertext: &[u8]) -> [u8; MAC_SIZE] {
        let mut block = aes::Block::clone_from_slice(iv);
        aes::Aes128::new(&self.mac_k.into()).encrypt_block(&mut block);
        let mut pk = [0u8; 32];
        pk[..16].copy_from_slice(&self.mac_r);
        pk[16..].copy_from_slice(&block);
        let tag = poly1305::Poly1305::new(&pk.into()).compute_unpadded(ciphertext);
        tag.into()
    }

    /// A fresh IV from the thread's CSPRNG (ChaCha12, reseeded from the
    /// operating system every 64 KiB of output). Asking the kernel for every
    /// IV cost one `getrandom` call per blob: 83k calls in a kernel-tree
    /// backup. Keys and salts still come straight from the kernel.
    fn new_iv() -> [u8; IV_SIZE] {
        let mut rng = rand::thread_rng();
        loop {
            let mut iv = [0u8; IV_SIZE];
            rand::RngCore::fill_bytes(&mut rng, &mut iv);
            if iv.iter().any(|&b| b != 0) {
                return iv;
            }
        }
    }

    /// Encrypts `plain` into `IV || ciphertext || MAC`.
    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + CRYPTO_OVERHEAD);
        self.encrypt_into(plain, &mut out);
        out
    }

    /// Appends `IV || ciphertext || MAC` of `plain` to `out`.
    pub fn encrypt_into(&self, plain: &[u8], out: &mut Vec<u8>) {
        let iv = Key::new_iv();
        out.reserve(plain.len() + CRYPTO_OVERHEAD);
        out.extend_from_slice(&iv);
        let start = out.len();
        out.extend_from_slice(plain);
        Aes256Ctr::new(&self.encrypt.into(), &iv.into()).apply_keystream(&mut out[start..]);
        let mac = self.mac(&iv, &out[start..]);
        out.extend_from_slice(&mac);
    }

    /// Verifies the MAC, then decrypts `IV || ciphertext || MAC`.
    pub fn decrypt(&self, data: &[u8]) -> Result<Vec<u8>, FormatError> {
        let mut out = Vec::new();
        self.decrypt_into(data, &mut out)?;
        Ok(out)
    }

    /// Like [`Key::decrypt`], appending the plaintext to `out` (left
    /// unchanged on error).
    pub fn decrypt_into(&self, data: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
        if data.len() < CRYPTO_OVERHEAD {
            return Err(FormatError::TooShort(data.len()));
        }
        let mut iv = [0u8; IV_SIZE];
        iv.copy_from_slice(&data[..IV_SIZE]);
        let ct = &data[IV_SIZE..data.len() - MAC_SIZE];
        let mac = &data[data.len() - MAC_SIZE..];
        if !ct_eq(&self.mac(&iv, ct), mac) {
            return Err(FormatError::Mac);
        }
        let start = out.len();
        out.extend_from_slice(ct);
        Aes256Ctr::new(&self.encrypt.into(), &iv.into()).apply_keystream(&mut out[start..]);
        Ok(())
    }

    /// Plaintext length of an encrypted object of `len` bytes.
    pub fn plaintext_len(len: usize) -> Option<usize> {
        len.checked_sub(CRYPTO_OVERHEAD)
    }

    /// The key-file JSON form of this key.
    pub fn to_json_struct(&self) -> MasterKeyJson {
        let b64 = &base64::engine::general_purpose::STANDARD;
        MasterKeyJson {
            mac: MacKeyJson {
                k: b64.encode(self.mac_k),
                r: b64.encode(self.mac_r),
            },
            encrypt: b64.encode(self.encrypt),
        }
    }

    /// Parses the key-file JSON form; every part must have its exact length
    /// and the key must not be all-zero.
    pub fn from_json_struct(j: &MasterKeyJson) -> Result<Key, FormatError> {
        fn part<const N: usize>(name: &str, s: &str) -> Result<[u8; N], FormatError> {
            let v = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| FormatError::invalid("master key", format!("{name}: {e}")))?;
            v.as_slice().try_into().map_err(|_| {
                FormatError::invalid(
                    "master key",
                    format!("{name} has {} bytes, expected {N}", v.len()),
                )
            })
        }
        let key = Key::from_parts(
            part("encrypt", &j.encrypt)?,
            part("mac.k", &j.mac.k)?,
            part("mac.r", &j.mac.r)?,
        );
        if !key.is_valid() {
            return Err(FormatError::invalid("master key", "key is all zeros"));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_and_overhead() {
        let k = Key::random();
        let c = k.encrypt(b"hello");
        assert_eq!(c.len(), 5 + CRYPTO_OVERHEAD);
        assert_eq!(k.decrypt(&c).unwrap(), b"hello");
        assert!(matches!(
            k.decrypt(&c[..31]),
            Err(FormatError::TooShort(31))
        ));
        assert!(matches!(Key::random().decrypt(&c), Err(FormatError::Mac)));
        let empty = k.encrypt(b"");
        assert_eq!(k.decrypt(&empty).unwrap(), b"");
    }

    /// IVs come from per-thread generators: none may repeat, neither within
    /// a thread nor between threads (each thread seeds its own from the OS).
    #[test]
    fn ivs_never_repeat_within_or_across_threads() {
        let k = Key::random();
        let ivs = |n: usize| -> Vec<[u8; IV_SIZE]> {
            (0..n)
                .map(|_| k.encrypt(b"same")[..IV_SIZE].try_into().unwrap())
                .collect()
        };
        let mut all: Vec<[u8; IV_SIZE]> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4).map(|_| s.spawn(|| ivs(5000))).collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        all.extend(ivs(5000));
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "an IV was used twice");
        assert!(all.iter().all(|iv| iv.iter().any(|&b| b != 0)));
    }
    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn poly1305_aes_paper_vectors() {
        // (msg, r, k, nonce, mac) from Bernstein's Poly1305-AES paper, as used
        // by restic's crypto tests.
        let vectors = [
            ("f3f6", "851fc40c3467ac0be05cc20404f3f700", "ec074c835580741701425b623235add6",
             "fb447350c4e868c52ac3275cf9d4327e", "f4c633c3044fc145f84f335cb81953de"),
            ("", "a0f3080000f46400d0c7e9076c834403", "75deaa25c09f208e1dc4ce6b5cad3fbf",
             "61ee09218d29b0aaed7e154a2c5509cc", "dd3fab2251f11ac759f0887129cc2ee7"),
            ("663cea190ffb83d89593f3f476b6bc24d7e679107ea26adb8caf6652d0656136",
             "48443d0bb0d21109c89a100b5ce2c208", "6acb5f61a7176dd320c5c1eb2edcdc74",
             "ae212a55399729595dea458bc621ff0e", "0ee1c16bb73f0f4fd19881753c01cdbe"),
            ("ab0812724a7f1e342742cbed374d94d136c6b8795d45b3819830f2c04491faf0990c62e48b8018b2c3e4a0fa3134cb67fa83e158c994d961c4cb21095c1bf9",
             "12976a08c4426d0ce8a82407c4f48207", "e1a5668a4d5b66a5f68cc5424ed5982d",
             "9ae831e743978d3a23527c7128149e3a", "5154ad0d2cb26e01274fc51148491f1b"),
        ];
        for (msg, r, k, nonce, mac) in vectors {
            let key = Key::from_parts([1; 32], h(k).try_into().unwrap(), h(r).try_into().unwrap());
            let nonce: [u8; 16] = h(nonce).try_into().unwrap();
            assert_eq!(key.mac(&nonce, &h(msg)).to_vec(), h(mac));
        }
    }

    #[test]
    fn restic_ciphertext_vector() {
        let key = Key::from_parts(
            h("303e8687b1d7db18421bdc6bb8588ccadac4d59ee87b8ff70c44e635790cafef")
                .try_into()
                .unwrap(),
            h("ef4d8824cb80b2bcc5fbff8a9b12a42c").try_into().unwrap(),
            h("cc8d4b948ee0ebfe1d415de921d10353").try_into().unwrap(),
        );
        let c = h("69fb41c62d12def4593bd71757138606338f621aeaeb39da0fe4f99233f8037a54ea63338a813bcf3f75d8c3cc75dddf8750");
        assert_eq!(key.decrypt(&c).unwrap(), b"Dies ist ein Test!");
    }

    #[test]
    fn json_struct_roundtrip() {
        let k = Key::random();
        let j = k.to_json_struct();
        assert_eq!(Key::from_json_struct(&j).unwrap(), k);
        let s = crate::gojson::to_vec(&j).unwrap();
        assert!(s.starts_with(br#"{"mac":{"k":""#));
        let mut bad = j.clone();
        bad.encrypt = "AAAA".into();
        assert!(Key::from_json_struct(&bad).is_err());
    }

    proptest! {
        #[test]
        fn roundtrip_and_tamper(data in proptest::collection::vec(any::<u8>(), 0..2048), bit in any::<usize>()) {
            let k = Key::random();
            let mut c = k.encrypt(&data);
            prop_assert_eq!(k.decrypt(&c).unwrap(), data.clone());
            let mut appended = vec![7u8];
            k.decrypt_into(&c, &mut appended).unwrap();
            prop_assert_eq!(&appended[1..], &data[..]);
            let bit = bit % (c.len() * 8);
            c[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(matches!(k.decrypt(&c), Err(FormatError::Mac)));
        }
    }
}
