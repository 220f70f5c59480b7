//! Key files: the master key, encrypted with a key derived from a password
//! by scrypt. Stored as plain (unencrypted, uncompressed) JSON; the file name
//! is the SHA-256 of the JSON bytes.

use base64::Engine;
use chrono::{DateTime, FixedOffset};
use serde::Serialize;

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
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
}

/// A key file, with the fields and JSON names restic writes. Read with
/// [`KeyFile::from_json_bytes`] (Go's lenient decoding), not serde.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyFile {
    #[serde(serialize_with = "crate::gotime::rfc3339::serialize")]
    pub created: DateTime<FixedOffset>,
    pub username: String,
    pub hostname: String,
    pub kdf: String,
    #[serde(rename = "N")]
    pub n: u32,
    pub r: u32,
    pub p: u32,
    #[serde(serialize_with = "b64::serialize")]
    pub salt: Vec<u8>,
    #[serde(serialize_with = "b64::serialize")]
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

    /// Parses a stored key file, accepting every key file restic accepts.
    ///
    /// Restic decodes key files with Go's `encoding/json`: field names match
    /// case-insensitively (an exact match wins), unknown fields are ignored,
    /// and a missing or `null` field keeps its zero value. rustic writes key
    /// files without `created` (and may leave out `username`/`hostname`);
    /// those get Go's zero time and empty strings here, as in restic. Errors
    /// name the field and what is wrong with it, so that a damaged key file
    /// can be told from a wrong password.
    pub fn from_json_bytes(data: &[u8]) -> Result<KeyFile, FormatError> {
        use serde_json::Value;
        let root: Value =
            serde_json::from_slice(data).map_err(|e| FormatError::json("key file", e))?;
        let Value::Object(map) = root else {
            return Err(FormatError::invalid("key file", "not a JSON object"));
        };
        // Go's rule: the exact name first, else any case-insensitive match.
        let field = |name: &str| -> Option<&Value> {
            map.get(name)
                .or_else(|| {
                    map.iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v)
                })
                .filter(|v| !v.is_null())
        };
        let bad = |name: &str, what: &str| {
            FormatError::invalid("key file", format!("field {name:?}: {what}"))
        };
        let string = |name: &str| -> Result<String, FormatError> {
            match field(name) {
                None => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => Err(bad(name, "not a string")),
            }
        };
        let number = |name: &str| -> Result<u32, FormatError> {
            match field(name) {
                None => Ok(0),
                Some(Value::Number(n)) => n
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad(name, &format!("{n} is not a valid parameter"))),
                Some(_) => Err(bad(name, "not a number")),
            }
        };
        let bytes = |name: &str| -> Result<Vec<u8>, FormatError> {
            match field(name) {
                None => Ok(Vec::new()),
                Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map_err(|e| bad(name, &format!("invalid base64 ({e})"))),
                Some(_) => Err(bad(name, "not a base64 string")),
            }
        };
        let created = match field("created") {
            None => crate::gotime::zero(),
            Some(Value::String(s)) => {
                crate::gotime::parse(s).map_err(|e| bad("created", &e.to_string()))?
            }
            Some(_) => return Err(bad("created", "not a timestamp string")),
        };
        Ok(KeyFile {
            created,
            username: string("username")?,
            hostname: string("hostname")?,
            kdf: string("kdf")?,
            n: number("N")?,
            r: number("r")?,
            p: number("p")?,
            salt: bytes("salt")?,
            data: bytes("data")?,
        })
    }

    /// Why this key file cannot be opened with any password (`None` when it
    /// looks usable): an unknown KDF, bad scrypt parameters, no salt or no
    /// encrypted data. [`KeyFile::open`] failing with [`FormatError::Mac`] on
    /// a usable file means a wrong password.
    pub fn unusable(&self) -> Option<String> {
        if self.kdf != "scrypt" {
            return Some(format!(
                "unsupported KDF {:?} (restic uses scrypt)",
                self.kdf
            ));
        }
        if let Err(e) = self.params().validate() {
            return Some(e.to_string());
        }
        if self.salt.is_empty() {
            return Some("no salt".into());
        }
        if self.data.len() < 32 {
            return Some(format!(
                "encrypted master key is {} bytes, too short",
                self.data.len()
            ));
        }
        None
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

    /// rustic leaves out `created` (and may leave out user and host); Go's
    /// decoder also matches names case-insensitively and ignores unknown
    /// fields. Such key files open, as they do in restic.
    #[test]
    fn rustic_key_file_without_created_opens() {
        let master = Key::random();
        let kf = KeyFile::create(b"pw", &master, FAST, "h", "u").unwrap();
        let mut v: serde_json::Value =
            serde_json::from_slice(&kf.to_json_bytes().unwrap()).unwrap();
        let m = v.as_object_mut().unwrap();
        m.remove("created");
        m.remove("username");
        m.insert("hostname".into(), serde_json::Value::Null);
        let kdf = m.remove("kdf").unwrap();
        m.insert("KDF".into(), kdf);
        m.insert("extra".into(), serde_json::json!({"ignored": true}));
        let back = KeyFile::from_json_bytes(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert!(crate::gotime::is_zero(&back.created));
        assert_eq!((back.username.as_str(), back.hostname.as_str()), ("", ""));
        assert_eq!(back.unusable(), None);
        assert_eq!(back.open(b"pw").unwrap(), master);
    }

    /// A damaged key file says which field is wrong, and a file that cannot
    /// be opened by any password says why.
    #[test]
    fn damaged_key_file_names_the_problem() {
        let kf = KeyFile::create(b"pw", &Key::random(), FAST, "h", "u").unwrap();
        let mut v: serde_json::Value =
            serde_json::from_slice(&kf.to_json_bytes().unwrap()).unwrap();
        v["salt"] = "not base64!".into();
        let e = KeyFile::from_json_bytes(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.to_string().contains("\"salt\": invalid base64"), "{e}");
        v["salt"] = serde_json::Value::Null;
        v["created"] = 5.into();
        let e = KeyFile::from_json_bytes(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.to_string().contains("created"), "{e}");
        let e = KeyFile::from_json_bytes(b"{\"kdf\": \"scr").unwrap_err();
        assert!(e.to_string().contains("invalid JSON in key file"), "{e}");
        v["created"] = serde_json::Value::Null;
        let no_salt = KeyFile::from_json_bytes(&serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(no_salt.unusable().as_deref(), Some("no salt"));
        let mut odd = kf.clone();
        odd.n = 1000;
        assert!(odd.unusable().unwrap().contains("power of two"));
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
