//! Key files: the master key, encrypted with a key derived from a password
//! by scrypt. Stored as plain (unencrypted, uncompressed) JSON; the file name
//! is the SHA-256 of the JSON bytes.

use base64::Engine;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::crypto::{Key, MasterKeyJson};
use crate::error::FormatError;
use crate::id::{Id, KeyId};

/// Length of the random salt restic uses.
pub const SALT_LEN: usize = 64;

/// Environment variable read by [`KdfParams::from_env`].
///
/// **Testing knob only**: it lowers the scrypt work factor so that test suites
/// can create repositories quickly (tests use `1024`). Never set it for real
/// repositories: a low `N` makes password guessing cheap.
pub const TEST_KDF_N_ENV: &str = "BUNKER_TEST_KDF_N";

/// scrypt parameters (`N` must be a power of two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    pub n: u32,
    pub r: u32,
    pub p: u32,
}

impl Default for KdfParams {
    fn default() -> KdfParams {
        KdfParams {
            n: 32768,
            r: 8,
            p: 1,
        }
    }
}

/// Upper bound of N·r·p accepted from a key file (see [`KdfParams::validate`]).
pub const MAX_KDF_WORK: u64 = 1 << 28;

impl KdfParams {
    /// The defaults, except that `N` is taken from `BUNKER_TEST_KDF_N` when
    /// that is set to a power of two >= 2 (a testing knob, see [`TEST_KDF_N_ENV`]).
    pub fn from_env() -> KdfParams {
        let mut p = KdfParams::default();
        if let Some(n) = std::env::var(TEST_KDF_N_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| *n >= 2 && n.is_power_of_two())
        {
            p.n = n;
        }
        p
    }

    /// Checks the parameters and caps memory (128·N·r bytes) at 4 GiB so
    /// that a hostile key file cannot exhaust memory.
    pub fn validate(&self) -> Result<(), FormatError> {
        if self.n < 2 || !self.n.is_power_of_two() {
            return Err(FormatError::Kdf(format!(
                "N = {} is not a power of two >= 2",
                self.n
            )));
        }
        if self.r == 0 || self.p == 0 {
            return Err(FormatError::Kdf(format!(
                "r = {}, p = {} must be positive",
                self.r, self.p
            )));
        }
        let mem = 128u64 * u64::from(self.n) * u64::from(self.r);
        if mem > 4 << 30 {
            return Err(FormatError::Kdf(format!(
                "N = {}, r = {} would need {} MiB of memory",
                self.n,
                self.r,
                mem >> 20
            )));
        }
        // The work is N·r·p: a huge p (up to 2^30 passes the scrypt crate)
        // would make opening the repository hang for hours, as every key file
        // is tried. restic's largest parameters are N = 2^20, r = 8, p = 1
        // (2^23); 2^28 leaves 32 times that.
        let work = u64::from(self.n) * u64::from(self.r) * u64::from(self.p);
        if work > MAX_KDF_WORK {
            return Err(FormatError::Kdf(format!(
                "N = {}, r = {}, p = {} is far more work than any restic key uses",
                self.n, self.r, self.p
            )));
        }
        Ok(())
    }

    /// Derives the user key from `password` and `salt`.
    pub fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Key, FormatError> {
        self.validate()?;
        let log_n = self.n.trailing_zeros() as u8;
        let params = scrypt::Params::new(log_n, self.r, self.p, 64)
            .map_err(|e| FormatError::Kdf(e.to_string()))?;
        let mut out = [0u8; 64];
        scrypt::scrypt(password, salt, &params, &mut out)
            .map_err(|e| FormatError::Kdf(e.to_string()))?;
        Ok(Key::from_kdf_output(&out))
    }
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<std::borrow::Cow<str>>::deserialize(d)?;
        match s {
            None => Ok(Vec::new()),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A key file, with the fields and JSON names restic writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyFile {
    #[serde(with = "crate::gotime::rfc3339")]
    pub created: DateTime<FixedOffset>,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub hostname: String,
    pub kdf: String,
    #[serde(rename = "N")]
    pub n: u32,
    pub r: u32,
    pub p: u32,
    #[serde(with = "b64")]
    pub salt: Vec<u8>,
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

impl KeyFile {
    /// Wraps `master` for `password` with a fresh random salt.
    pub fn create(
        password: &[u8],
        master: &Key,
        params: KdfParams,
        hostname: &str,
        username: &str,
    ) -> Result<KeyFile, FormatError> {
        let mut salt = vec![0u8; SALT_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
        let user = params.derive(password, &salt)?;
        let json = crate::gojson::to_vec(&master.to_json_struct())
            .map_err(|e| FormatError::json("master key", e))?;
        Ok(KeyFile {
            created: crate::gotime::now_local(),
            username: username.to_string(),
            hostname: hostname.to_string(),
            kdf: "scrypt".to_string(),
            n: params.n,
            r: params.r,
            p: params.p,
            salt,
            data: user.encrypt(&json),
        })
    }

    /// The scrypt parameters recorded in this file.
    pub fn params(&self) -> KdfParams {
        KdfParams {
            n: self.n,
            r: self.r,
            p: self.p,
        }
    }

    /// Unwraps the master key. [`FormatError::Mac`] means a wrong password.
    pub fn open(&self, password: &[u8]) -> Result<Key, FormatError> {
        if self.kdf != "scrypt" {
            return Err(FormatError::Kdf(format!("unsupported KDF {:?}", self.kdf)));
        }
        if self.salt.is_empty() {
            return Err(FormatError::Kdf("empty salt".into()));
        }
        let user = self.params().derive(password, &self.salt)?;
        let json = user.decrypt(&self.data)?;
        let mk: MasterKeyJson =
            serde_json::from_slice(&json).map_err(|e| FormatError::json("master key", e))?;
        Key::from_json_struct(&mk)
    }

    /// The JSON bytes to store (Go `json.Marshal` layout).
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, FormatError> {
        crate::gojson::to_vec(self).map_err(|e| FormatError::json("key file", e))
    }

    /// Parses a stored key file.
    pub fn from_json_bytes(data: &[u8]) -> Result<KeyFile, FormatError> {
        serde_json::from_slice(data).map_err(|e| FormatError::json("key file", e))
    }

    /// The JSON bytes and their storage id.
    pub fn encode(&self) -> Result<(KeyId, Vec<u8>), FormatError> {
        let bytes = self.to_json_bytes()?;
        Ok((KeyId(Id::hash(&bytes)), bytes))
    }

    /// The salt as base64 (as shown in the JSON).
    pub fn salt_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.salt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        n: 1024,
        r: 8,
        p: 1,
    };

    #[test]
    fn create_open_wrong_password() {
        let master = Key::random();
        let kf = KeyFile::create(b"secret", &master, FAST, "host", "user").unwrap();
        assert_eq!(kf.salt.len(), SALT_LEN);
        let (id, bytes) = kf.encode().unwrap();
        assert_eq!(id.id(), Id::hash(&bytes));
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"created":""#), "{text}");
        assert!(text.contains(
            r#""username":"user","hostname":"host","kdf":"scrypt","N":1024,"r":8,"p":1,"salt":""#
        ));
        let back = KeyFile::from_json_bytes(&bytes).unwrap();
        assert_eq!(back, kf);
        assert_eq!(back.open(b"secret").unwrap(), master);
        assert!(matches!(back.open(b"wrong"), Err(FormatError::Mac)));
    }

    #[test]
    fn params_validation() {
        assert!(KdfParams {
            n: 1000,
            r: 8,
            p: 1
        }
        .validate()
        .is_err());
        assert!(KdfParams {
            n: 1 << 30,
            r: 8,
            p: 1
        }
        .validate()
        .is_err());
        assert!(KdfParams {
            n: 1024,
            r: 0,
            p: 1
        }
        .validate()
        .is_err());
        assert!(KdfParams::default().validate().is_ok());
        // Found while writing the key-file fuzz target: a hostile p made
        // opening hang (every key file is tried), memory being no limit.
        assert!(KdfParams {
            n: 1 << 15,
            r: 8,
            p: 1 << 20
        }
        .validate()
        .is_err());
        assert!(KdfParams {
            n: 1 << 20,
            r: 8,
            p: 1
        }
        .validate()
        .is_ok());
        let mut kf = KeyFile::create(b"pw", &Key::random(), FAST, "h", "u").unwrap();
        kf.kdf = "argon2".into();
        assert!(matches!(kf.open(b"pw"), Err(FormatError::Kdf(_))));
    }
}
