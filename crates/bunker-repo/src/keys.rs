//! Key files: list, add, remove, change password.

use bunker_format::gotime;
use bunker_format::keyfile::{KdfParams, KeyFile};
use bunker_format::{Id, KeyId};
use bunker_storage::FileType;

use crate::error::{RepoError, Result};
use crate::Repository;

/// One key file as `bunker key list` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub current: bool,
    pub username: String,
    pub hostname: String,
    pub created: String,
}

pub fn list(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for f in repo.storage().list(FileType::Key)? {
        let bytes = repo.storage().read(FileType::Key, &f.name)?;
        let kf = KeyFile::from_json_bytes(&bytes)
            .map_err(|e| RepoError::format("key file", &f.name, e))?;
        out.push(KeyInfo {
            current: f.name == repo.key_id().to_string(),
            id: f.name,
            username: kf.username.clone(),
            hostname: kf.hostname.clone(),
            created: gotime::format(&kf.created),
        });
    }
    out.sort_by(|a, b| a.created.cmp(&b.created));
    Ok(out)
}

/// Add a key file for `password` that unlocks the same master key.
pub fn add(
    repo: &Repository,
    password: &[u8],
    kdf: KdfParams,
    username: &str,
    hostname: &str,
) -> Result<KeyId> {
    let kf = KeyFile::create(password, repo.key(), kdf, hostname, username)
        .map_err(|e| RepoError::format("key file", "new", e))?;
    let bytes = kf
        .to_json_bytes()
        .map_err(|e| RepoError::format("key file", "new", e))?;
    let id = KeyId::from(Id::hash(&bytes));
    repo.storage()
        .write_new(FileType::Key, &id.to_string(), bytes.into())?;
    Ok(id)
}

/// Resolve a (prefix of a) key id.
pub fn resolve(repo: &Repository, prefix: &str) -> Result<String> {
    let matches: Vec<String> = repo
        .storage()
        .list(FileType::Key)?
        .into_iter()
        .map(|f| f.name)
        .filter(|n| n.starts_with(&prefix.to_ascii_lowercase()))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(RepoError::Invalid(format!(
            "no key matches {prefix:?}; see `bunker key list`"
        ))),
        _ => Err(RepoError::AmbiguousId(prefix.to_string())),
    }
}

/// Remove a key; refuses to remove the key in use or the last key.
pub fn remove(repo: &Repository, prefix: &str) -> Result<String> {
    let name = resolve(repo, prefix)?;
    if name == repo.key_id().to_string() {
        return Err(RepoError::Invalid(
            "refusing to remove the key this session was opened with; open the repository with another password first"
                .into(),
        ));
    }
    repo.storage().remove(FileType::Key, &name)?;
    Ok(name)
}

/// Change the password: add a new key, then remove the current one.
pub fn passwd(repo: &Repository, new_password: &[u8], kdf: KdfParams) -> Result<KeyId> {
    let old = repo.key_id().to_string();
    let (user, host) = {
        let bytes = repo.storage().read(FileType::Key, &old)?;
        let kf =
            KeyFile::from_json_bytes(&bytes).map_err(|e| RepoError::format("key file", &old, e))?;
        (kf.username.clone(), kf.hostname.clone())
    };
    let id = add(repo, new_password, kdf, &user, &host)?;
    repo.storage().remove(FileType::Key, &old)?;
    Ok(id)
}
