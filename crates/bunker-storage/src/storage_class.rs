//! S3 storage classes: validation of `s3.storage_class.*` values and the warnings
//! that go with infrequent-access and archive classes.

use crate::error::StorageError;

/// Storage classes bunker knows (Amazon's names; most S3 services accept a subset).
pub const KNOWN_STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
];

/// Classes whose objects cannot be read before a restore-from-archive request.
pub const ARCHIVE_STORAGE_CLASSES: &[&str] = &["GLACIER", "DEEP_ARCHIVE"];

/// Which files a storage class applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassTarget {
    /// Pack files (`data/`).
    Data,
    /// Config, keys, index, snapshots, locks and bunker's own files.
    Metadata,
}

/// Whether `class` is an archive class (objects need a restore before reading).
pub fn is_archive(class: &str) -> bool {
    ARCHIVE_STORAGE_CLASSES.contains(&class)
}

/// Validates the value of storage-class option `key` for `target`.
///
/// Known classes are accepted; other tokens of upper-case letters, digits and `_`
/// are accepted too (services add their own) and reported by [`warnings`].
/// Archive classes are refused for metadata: every command reads the config, keys
/// and index, which an archive class would make unreadable.
pub fn validate(key: &str, value: &str, target: ClassTarget) -> Result<String, StorageError> {
    let v = value.trim();
    let bad = |why: String| StorageError::invalid("options", format!("option {key}: {why}"));
    if v.is_empty()
        || !v
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(bad(format!(
            "{value:?} is not a storage class; expected an upper-case name such as {}",
            KNOWN_STORAGE_CLASSES.join(", ")
        )));
    }
    if target == ClassTarget::Metadata && is_archive(v) {
        return Err(bad(format!(
            "{v} is an archive class: index, snapshots and keys must stay readable; \
             use it for packs only (s3.storage_class.data={v})"
        )));
    }
    Ok(v.to_string())
}

/// Human warnings for the effective classes of packs and metadata.
pub fn warnings(data: Option<&str>, metadata: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for class in [data, metadata].into_iter().flatten() {
        if !KNOWN_STORAGE_CLASSES.contains(&class)
            && !out.iter().any(|w: &String| w.contains(class))
        {
            out.push(format!(
                "storage class {class} is not one bunker knows ({}); the service must accept it",
                KNOWN_STORAGE_CLASSES.join(", ")
            ));
        }
    }
    if let Some(class) = data.filter(|c| is_archive(c)) {
        out.push(format!(
            "pack files go to the archive class {class}: `restore`, `check --read-data`, \
             `prune` and `copy` from this repository need the packs restored from the \
             archive first (e.g. S3 RestoreObject), which takes hours and costs extra"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        for c in KNOWN_STORAGE_CLASSES {
            assert_eq!(
                validate("k", c, ClassTarget::Data).expect("known"),
                c.to_string()
            );
        }
        assert_eq!(
            validate("k", " EXPRESS_ONEZONE ", ClassTarget::Data).expect("token"),
            "EXPRESS_ONEZONE"
        );
        for bad in ["", "standard_ia", "STANDARD-IA", "A B"] {
            let e = validate("s3.storage_class.data", bad, ClassTarget::Data).expect_err(bad);
            assert!(e.message.contains("s3.storage_class.data"), "{e}");
        }
        for archive in ARCHIVE_STORAGE_CLASSES {
            assert!(validate("k", archive, ClassTarget::Metadata).is_err());
            assert!(validate("k", archive, ClassTarget::Data).is_ok());
        }
        assert!(validate("k", "GLACIER_IR", ClassTarget::Metadata).is_ok());
    }

    #[test]
    fn warnings_for_unknown_and_archive_classes() {
        assert!(warnings(Some("STANDARD_IA"), None).is_empty());
        assert!(warnings(None, None).is_empty());
        let w = warnings(Some("DEEP_ARCHIVE"), Some("STANDARD"));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("check --read-data") && w[0].contains("DEEP_ARCHIVE"));
        let w = warnings(Some("COLDLINE"), Some("COLDLINE"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("COLDLINE"));
    }
}
