//! The repository `config` file.
//!
//! Unlike other unpacked files the config is always stored as raw encrypted
//! JSON, never compressed, even in repository version 2.

use serde::{Deserialize, Serialize};

use crate::chunker::Polynomial;
use crate::crypto::Key;
use crate::error::FormatError;
use crate::id::Id;

/// Oldest repository version bunker reads.
pub const MIN_REPO_VERSION: u32 = 1;
/// Newest repository version bunker reads and the one it creates.
pub const MAX_REPO_VERSION: u32 = 2;

/// `{"version":2,"id":"<64 hex>","chunker_polynomial":"<hex>"}`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoConfig {
    pub version: u32,
    pub id: String,
    pub chunker_polynomial: Polynomial,
}

impl RepoConfig {
    /// A new version-2 config with a random id and polynomial.
    pub fn new_v2() -> Result<RepoConfig, FormatError> {
        Ok(RepoConfig {
            version: 2,
            id: Id::random().to_hex(),
            chunker_polynomial: Polynomial::random_irreducible()?,
        })
    }

    /// Checks the version (1 or 2) and the polynomial (irreducible, degree 53).
    pub fn validate(&self) -> Result<(), FormatError> {
        if !(MIN_REPO_VERSION..=MAX_REPO_VERSION).contains(&self.version) {
            return Err(FormatError::UnsupportedVersion(self.version));
        }
        let p = self.chunker_polynomial;
        if p.deg() != 53 {
            return Err(FormatError::Polynomial(format!(
                "{p} has degree {}, expected 53",
                p.deg()
            )));
        }
        if !p.is_irreducible() {
            return Err(FormatError::Polynomial(format!("{p} is not irreducible")));
        }
        Ok(())
    }

    /// True if blobs and unpacked files may be compressed (version >= 2).
    pub fn supports_compression(&self) -> bool {
        self.version >= 2
    }

    /// The bytes to store as `config`: Go-JSON, encrypted, never compressed.
    pub fn encrypt(&self, key: &Key) -> Result<Vec<u8>, FormatError> {
        let json = crate::gojson::to_vec(self).map_err(|e| FormatError::json("config", e))?;
        Ok(key.encrypt(&json))
    }

    /// Decrypts, parses and validates a stored `config`. Tolerates a
    /// compressed config although restic never writes one.
    pub fn decrypt(key: &Key, data: &[u8]) -> Result<RepoConfig, FormatError> {
        let cfg: RepoConfig = crate::unpacked::decode_json(key, data, "config")?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_layout_and_roundtrip() {
        let cfg = RepoConfig {
            version: 2,
            id: "5956a3f67a6230d4a92cefb29529f10196c7d92582ec305fd71ff6d331d6271b".into(),
            chunker_polynomial: Polynomial(0x25b468838dcb75),
        };
        let json = crate::gojson::to_vec(&cfg).unwrap();
        assert_eq!(
            json,
            br#"{"version":2,"id":"5956a3f67a6230d4a92cefb29529f10196c7d92582ec305fd71ff6d331d6271b","chunker_polynomial":"25b468838dcb75"}"#
        );
        let back: RepoConfig = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, cfg);
        let key = Key::random();
        let enc = cfg.encrypt(&key).unwrap();
        assert_eq!(key.decrypt(&enc).unwrap(), json);
        assert_eq!(RepoConfig::decrypt(&key, &enc).unwrap(), cfg);
    }

    #[test]
    fn validation() {
        let mut cfg = RepoConfig::new_v2().unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.id.len(), 64);
        cfg.version = 3;
        assert!(matches!(
            cfg.validate(),
            Err(FormatError::UnsupportedVersion(3))
        ));
        cfg.version = 1;
        cfg.chunker_polynomial = Polynomial(0x38f1e565e288df);
        assert!(cfg.validate().is_err());
        cfg.chunker_polynomial = Polynomial(0b111);
        assert!(cfg.validate().is_err());
    }
}
