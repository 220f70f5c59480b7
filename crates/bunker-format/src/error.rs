//! Errors of the format layer.

/// Everything that can go wrong while decoding or encoding repository bytes.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The MAC did not match: wrong key/password or tampered/corrupt data.
    #[error("authentication failed (wrong password, or data corrupted or tampered with)")]
    Mac,
    /// The ciphertext is shorter than IV + MAC.
    #[error("ciphertext too short ({0} bytes)")]
    TooShort(usize),
    #[error("invalid JSON in {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("zstd: {0}")]
    Compression(String),
    #[error("decompressed length {got} does not match expected {expected}")]
    LengthMismatch { expected: usize, got: usize },
    #[error("invalid pack: {0}")]
    Pack(String),
    #[error("unsupported repository version {0} (bunker reads versions 1 and 2)")]
    UnsupportedVersion(u32),
    #[error("unknown unpacked encoding version byte {0:#x}")]
    UnknownEncoding(u8),
    #[error("invalid id {0:?}: expected 64 hex digits")]
    InvalidId(String),
    #[error("invalid chunker polynomial: {0}")]
    Polynomial(String),
    #[error("key derivation: {0}")]
    Kdf(String),
    #[error("hash mismatch: content hashes to {actual}, expected {expected}")]
    HashMismatch { expected: String, actual: String },
    #[error("invalid {what}: {msg}")]
    Invalid { what: &'static str, msg: String },
}

impl FormatError {
    /// Format errors describe the bytes themselves, so retrying the same
    /// operation on the same bytes never helps. A storage layer that re-reads
    /// the bytes may still decide to retry on [`FormatError::Mac`] or
    /// [`FormatError::HashMismatch`] (a flaky transfer), see
    /// [`FormatError::is_corruption`].
    pub fn is_retryable(&self) -> bool {
        false
    }

    /// True when the error indicates damaged or tampered bytes (as opposed to
    /// a wrong setting or an unsupported feature). Re-downloading the object
    /// may help if the damage happened in transit.
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            FormatError::Mac
                | FormatError::TooShort(_)
                | FormatError::HashMismatch { .. }
                | FormatError::LengthMismatch { .. }
                | FormatError::Pack(_)
        )
    }

    pub(crate) fn invalid(what: &'static str, msg: impl Into<String>) -> FormatError {
        FormatError::Invalid {
            what,
            msg: msg.into(),
        }
    }

    pub(crate) fn json(what: &'static str, source: serde_json::Error) -> FormatError {
        FormatError::Json { what, source }
    }
}

/// Result alias of this crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;
