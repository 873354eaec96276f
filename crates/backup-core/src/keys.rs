//! Managing a repository's keys: several passphrases or key files can open one repository, each
//! a `keys/` object wrapping the same master secret, so keys are added, changed and removed
//! without rewriting any data.
//!
//! Removing the key the repository was opened with is refused (so a working key always
//! remains, and in particular the last key can never be removed); [`Repository::change_key`]
//! writes the new key before it removes the old one, so a change killed part-way leaves both
//! keys working.
//!
//! Not yet safe against a concurrent key change: the repository has no locks yet, so two
//! admins who at the same moment each remove the other's key (each opened with their own)
//! can leave no key at all. Until locks exist, make key changes one at a time.

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde::Serialize;

use crate::cipher::{KeyObject, KeySource};
use crate::error::{Error, Result};
use crate::repo::{Repository, get_bytes, is_object_name, list_names, poisoned, skip};

/// What kind of secret a key object is opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum KeyKind {
    /// A passphrase (Argon2id).
    Passphrase,
    /// A crypto-at-rest keyring file.
    KeyFile,
}

/// One key of a repository, as [`Repository::list_keys`] returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key's id (the 32 hex digits of its `keys/` object).
    pub id: String,
    /// Passphrase or key file.
    pub kind: KeyKind,
    /// The passphrase KDF and its parameters (`argon2id m=19456 t=2 p=1 salt=…`).
    pub kdf: Option<String>,
    /// Whether this is the key the repository was opened with.
    pub current: bool,
    /// When it was added, ns since the epoch (unknown for keys written before 2026-12-06).
    pub created_ns: Option<i64>,
    /// The host it was added on (unknown for keys written before 2026-12-06).
    pub host: Option<String>,
}

impl Repository {
    /// The id of the key this repository was opened (or created) with.
    pub fn current_key(&self) -> Result<String> {
        let name = self.key_name.lock().map_err(poisoned)?;
        Ok(name.trim_start_matches("keys/").to_string())
    }

    /// Every key object, in id order. Damaged ones and stray files in `keys/` are skipped and
    /// reported by [`Repository::skipped_objects`].
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let current = self.current_key()?;
        let mut keys = Vec::new();
        for name in list_names(self.store.as_ref(), "keys").await? {
            if !is_object_name("keys", &name) {
                skip(&self.skipped, &name, "not a repository key object");
                continue;
            }
            let object: Result<KeyObject> = match get_bytes(self.store.as_ref(), &name).await {
                Ok(bytes) => KeyObject::decode(&name, &bytes),
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let object = match object {
                Ok(object) => object,
                Err(e) => {
                    skip(&self.skipped, &name, &crate::report(&e));
                    continue;
                }
            };
            let id = name.trim_start_matches("keys/").to_string();
            keys.push(KeyInfo {
                kind: if object.kdf.is_some() {
                    KeyKind::Passphrase
                } else {
                    KeyKind::KeyFile
                },
                kdf: object.kdf,
                created_ns: object.created_ns,
                host: object.host,
                current: id == current,
                id,
            });
        }
        Ok(keys)
    }

    /// Adds a key (another admin's passphrase or key file) that opens this repository; returns
    /// its id. An empty passphrase is refused. No data is rewritten.
    pub async fn add_key(&self, key: &KeySource) -> Result<String> {
        if self.is_write_only() {
            return Err(Error::Config(
                "a write-only repository has no password or key-file keys: the owner's identity opens it, the host key writes to it".into(),
            ));
        }
        if key.is_empty_passphrase() {
            return Err(Error::Config(
                "empty passphrase: a repository key needs a non-empty one".into(),
            ));
        }
        let name = self.write_key(key).await?;
        Ok(name.trim_start_matches("keys/").to_string())
    }

    /// Removes key `id` (or a unique prefix of it). Removing the key this repository was
    /// opened with, and so the last key, is refused with [`Error::KeyRemovalRefused`].
    pub async fn remove_key(&self, id: &str) -> Result<()> {
        self.refuse_if_append_only("key remove")?;
        let keys = self.list_keys().await?;
        let matching: Vec<_> = keys.iter().filter(|k| k.id.starts_with(id)).collect();
        let key = match matching.as_slice() {
            [key] => *key,
            [] => {
                return Err(Error::NotFound {
                    what: format!("key {id}"),
                });
            }
            many => {
                return Err(Error::Config(format!(
                    "key prefix {id} is ambiguous ({} match)",
                    many.len()
                )));
            }
        };
        if keys.len() == 1 {
            return Err(Error::KeyRemovalRefused {
                id: key.id.clone(),
                reason: "it is the repository's last key",
            });
        }
        if key.current {
            return Err(Error::KeyRemovalRefused {
                id: key.id.clone(),
                reason: "it is the key this repository was opened with (open it with another key, or use key passwd)",
            });
        }
        self.delete_key(&key.id).await
    }

    /// Replaces the key this repository was opened with by `new` (a new passphrase or key
    /// file): writes the new key object, then removes the old one; returns the new key's id.
    /// Killed in between, both keys open the repository. No data is rewritten.
    pub async fn change_key(&self, new: &KeySource) -> Result<String> {
        self.refuse_if_append_only("key passwd")?;
        let old = self.current_key()?;
        let id = self.add_key(new).await?;
        *self.key_name.lock().map_err(poisoned)? = format!("keys/{id}");
        self.delete_key(&old).await?;
        Ok(id)
    }

    async fn delete_key(&self, id: &str) -> Result<()> {
        let name = format!("keys/{id}");
        match self.store.delete(&ObjectPath::from(name.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::store(name, e)),
        }
    }
}
