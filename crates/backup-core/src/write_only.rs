//! Write-only (asymmetric) repositories: a host that holds only the owner's **public** key
//! backs up and deduplicates against its own earlier data, but decrypts nothing stored.
//!
//! The owner holds an X25519 key pair in age's format (`age1…` recipient, `AGE-SECRET-KEY-1…`
//! identity; crypto-at-rest's age module). A host is provisioned by
//! [`Repository::init_write_only`], run on the host: it generates the host's own secret
//! ([`HostKey`], never uploaded in clear), writes it sealed to the owner's public key
//! (`hosts/<id>`) and a version-2 `config` naming the owner's recipient. From then on:
//!
//! * the host ([`KeySource::Host`]) opens the repository with its host key, reads `config`, its
//!   index (chunk ids and where they are: no content) and locks, and adds snapshots. Every pack
//!   frame (file data and trees), pack header and snapshot is sealed under a fresh data key that
//!   only the owner's private key can unwrap: once written, the host cannot read it back.
//!   Reading operations fail with [`Error::WriteOnly`];
//! * the owner ([`KeySource::OwnerIdentity`]) opens everything: restore, check with
//!   `--read-data`, forget, prune, ls.
//!
//! The host reads no snapshot back, so its parent for change detection is a local cache of
//! its own last run ([`Repository::with_host_cache`]).
//!
//! See `FORMAT.md` ("Write-only repositories") for the objects and why this design.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use backup_core::{BackupOptions, InitOptions, KeySource, NoProgress, Repository};
//! use backup_core::write_only::HostKey;
//! use crypto_at_rest::age::X25519Identity;
//!
//! let owner = X25519Identity::generate().expect("random"); // kept by the owner, elsewhere
//! let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
//!
//! // On the host: only the owner's public key, and a host key made there.
//! let host_key = HostKey::generate()?;
//! let repo = Arc::new(
//!     Repository::init_write_only(
//!         store.clone(), "memory", &owner.to_public(), &host_key, InitOptions::new(),
//!     )
//!     .await?,
//! );
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("a.txt"), b"hello")?;
//! let options = BackupOptions::builder([dir.path()]).build()?;
//! backup_core::backup(repo.clone(), options, Arc::new(NoProgress)).await?;
//! // The host cannot read what it wrote.
//! assert!(matches!(repo.snapshots().await, Err(backup_core::Error::WriteOnly { .. })));
//!
//! // Elsewhere, the owner's identity opens everything.
//! let owner_repo = Repository::open(store, "memory", &KeySource::OwnerIdentity(owner)).await?;
//! assert_eq!(owner_repo.snapshots().await?.len(), 1);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crypto_at_rest::age::{FileKey, Identity, Recipient, Stanza, X25519Identity, X25519Recipient};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::chunker::ChunkerParams;
use crate::cipher::{KeySource, MASTER_LEN, OpenError};
use crate::error::{Error, Result};
use crate::format::{self, ChunkId, Config, Snapshot, Tree};
use crate::repo::{InitOptions, Keys, Repository, get_bytes, is_object_name, list_names};

/// The format version of write-only repositories (version 1 repositories stay as they are).
pub const WRITE_ONLY_FORMAT_VERSION: u32 = 2;

const CONFIG: &str = "config";
const HOSTS: &str = "hosts";
/// First line of a host key file.
const HOST_KEY_MAGIC: &str = "hostguard-backup-host-key v1";
/// First byte of an object sealed to the owner.
const OWNER_SEALED_MAGIC: u8 = b'W';
/// Length of an X25519 stanza's argument: the ephemeral share in unpadded base64.
const SHARE_B64_LEN: usize = 43;
/// Length of the wrapped file key (16 bytes and a ChaCha20-Poly1305 tag).
const WRAPPED_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Bytes an owner-sealed object adds to its plaintext.
pub(crate) const OWNER_OVERHEAD: usize = 1 + SHARE_B64_LEN + WRAPPED_LEN + TAG_LEN;

/// A write-only host's own secret: 32 random bytes generated on the host, from which it derives
/// its chunk id, chunker and group keys and the key sealing its index, locks and `config`.
/// It opens no file data, tree or snapshot. Its `Debug` output never shows it.
#[derive(Clone)]
pub struct HostKey {
    secret: Zeroizing<[u8; MASTER_LEN]>,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostKey(..)")
    }
}

impl HostKey {
    /// A fresh host key from the system's random generator.
    pub fn generate() -> Result<HostKey> {
        let mut secret = Zeroizing::new([0u8; MASTER_LEN]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), secret.as_mut())
            .map_err(|_| Error::Config("the system random generator failed".into()))?;
        Ok(HostKey { secret })
    }

    /// Reads a host key file (`hostguard-backup-host-key v1`, then `secret <64 hex>`).
    pub fn load(path: &Path) -> Result<HostKey> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
        let bad = |reason: &str| {
            Error::Config(format!("{}: not a host key file: {reason}", path.display()))
        };
        let mut lines = text.lines();
        if lines.next() != Some(HOST_KEY_MAGIC) {
            return Err(bad(&format!("the first line is not `{HOST_KEY_MAGIC}`")));
        }
        let hex_secret = lines
            .next()
            .and_then(|l| l.strip_prefix("secret "))
            .ok_or_else(|| bad("no `secret` line"))?;
        let mut secret = Zeroizing::new([0u8; MASTER_LEN]);
        hex::decode_to_slice(hex_secret.trim(), secret.as_mut())
            .map_err(|_| bad("the secret is not 64 hex digits"))?;
        Ok(HostKey { secret })
    }

    /// Writes the key to a new file (mode 0600); refuses to replace an existing file.
    pub fn save_new(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let text = Zeroizing::new(format!(
            "{HOST_KEY_MAGIC}\nsecret {}\n",
            hex::encode(self.secret.as_ref())
        ));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(path, e))
    }
}

impl KeySource {
    /// The owner's identity read from a file of `AGE-SECRET-KEY-1…` lines (the first is used;
    /// `#` comments are allowed, as in age identity files).
    pub fn owner_identity_file(path: &Path) -> Result<KeySource> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
        let mut identities =
            crypto_at_rest::age::parse_identities(&text).map_err(|source| Error::Crypto {
                what: format!("identity file {}", path.display()),
                source,
            })?;
        if identities.is_empty() {
            return Err(Error::Config(format!(
                "{}: no AGE-SECRET-KEY-1 identity in it",
                path.display()
            )));
        }
        Ok(KeySource::OwnerIdentity(identities.swap_remove(0)))
    }

    /// A write-only host's key file ([`HostKey::load`]).
    pub fn host_key_file(path: &Path) -> Result<KeySource> {
        HostKey::load(path).map(KeySource::Host)
    }
}

/// Parses one `age1…` recipient (the owner's public key).
pub fn parse_owner_recipient(text: &str) -> Result<X25519Recipient> {
    let recipients =
        crypto_at_rest::age::parse_recipients(text).map_err(|source| Error::Crypto {
            what: "the owner's recipient".into(),
            source,
        })?;
    match <[X25519Recipient; 1]>::try_from(recipients) {
        Ok([recipient]) => Ok(recipient),
        Err(found) => Err(Error::Config(format!(
            "expected exactly one age1 recipient for the owner, found {}",
            found.len()
        ))),
    }
}

/// Which objects are sealed to the owner: pack frames (`blob:` + id, data and trees alike),
/// pack headers and snapshots. The rest (`config`, `index/`, `locks/`) stays under the host's
/// key-encryption key, since the host needs them to deduplicate and to lock.
pub(crate) fn is_owner_object(aad: &[u8]) -> bool {
    aad.starts_with(b"blob:") || aad.starts_with(b"snapshots/") || aad.ends_with(b"#header")
}

/// Seals objects to the owner's public key; opens them with the owner's identity, if held.
pub(crate) struct OwnerSeal {
    recipient: X25519Recipient,
    identity: Option<X25519Identity>,
    /// Derived from the host secret: binds each data key to it, so that whoever has only the
    /// public key (not the host) cannot write an object the owner accepts.
    object_key: Zeroizing<[u8; 32]>,
}

impl OwnerSeal {
    fn new(
        host_secret: &[u8; MASTER_LEN],
        recipient: X25519Recipient,
        identity: Option<X25519Identity>,
    ) -> Self {
        OwnerSeal {
            recipient,
            identity,
            object_key: Zeroizing::new(blake3::derive_key(
                "hostguard backup-core write-only object key",
                host_secret,
            )),
        }
    }

    /// Whether this handle can open owner-sealed objects.
    pub(crate) fn can_open(&self) -> bool {
        self.identity.is_some()
    }

    pub(crate) fn seal_append(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        seal_to_owner(&self.recipient, Some(&self.object_key), aad, plaintext, out)
    }

    pub(crate) fn open_into(
        &self,
        aad: &[u8],
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), OpenError> {
        out.clear();
        let identity = self.identity.as_ref().ok_or(OpenError)?;
        let opened = open_as_owner(identity, Some(&self.object_key), aad, sealed)?;
        out.extend_from_slice(&opened);
        Ok(())
    }
}

/// The object's data key: from the fresh file key, bound to the host's object key when given.
fn data_key(file_key: &FileKey, object_key: Option<&[u8; 32]>) -> Result<LessSafeKey, OpenError> {
    let key = Zeroizing::new(match object_key {
        Some(k) => *blake3::keyed_hash(k, file_key.as_bytes()).as_bytes(),
        None => blake3::derive_key(
            "hostguard backup-core write-only host secret wrap",
            file_key.as_bytes(),
        ),
    });
    UnboundKey::new(&AES_256_GCM, key.as_ref())
        .map(LessSafeKey::new)
        .map_err(|_| OpenError)
}

/// `W || X25519 share (43 b64) || wrapped file key (32) || AES-256-GCM(D, nonce 0, aad) || tag`.
/// The data key D is used once, so a fixed nonce is safe.
fn seal_to_owner(
    recipient: &X25519Recipient,
    object_key: Option<&[u8; 32]>,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let crypto = |source| Error::Crypto {
        what: "sealing a repository object to the owner".into(),
        source,
    };
    let mut file_key = Zeroizing::new([0u8; 16]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), file_key.as_mut())
        .map_err(|_| Error::Config("the system random generator failed".into()))?;
    let file_key = FileKey::from_bytes(*file_key);
    let stanza = match recipient.wrap(&file_key).map_err(crypto)?.as_slice() {
        [stanza] => stanza.clone(),
        _ => {
            return Err(Error::Config(
                "an X25519 recipient gave no single stanza".into(),
            ));
        }
    };
    let share = match stanza.args.as_slice() {
        [share] if share.len() == SHARE_B64_LEN && stanza.body.len() == WRAPPED_LEN => share,
        _ => return Err(Error::Config("an X25519 stanza of unexpected shape".into())),
    };
    let key = data_key(&file_key, object_key)
        .map_err(|_| Error::Config("AES-256-GCM refused a 32-byte key".into()))?;
    out.reserve(OWNER_OVERHEAD + plaintext.len());
    out.push(OWNER_SEALED_MAGIC);
    out.extend_from_slice(share.as_bytes());
    out.extend_from_slice(&stanza.body);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(aad),
            &mut out[start..],
        )
        .map_err(|_| Error::Config("AES-256-GCM sealing failed".into()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(())
}

/// Opens an owner-sealed object; every failure (not for this identity, damaged, tampered, wrong
/// object) is the same opaque [`OpenError`].
fn open_as_owner(
    identity: &X25519Identity,
    object_key: Option<&[u8; 32]>,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    if sealed.len() < OWNER_OVERHEAD || sealed[0] != OWNER_SEALED_MAGIC {
        return Err(OpenError);
    }
    let (share, rest) = sealed[1..].split_at(SHARE_B64_LEN);
    let (wrapped, body) = rest.split_at(WRAPPED_LEN);
    let share = std::str::from_utf8(share).map_err(|_| OpenError)?;
    let stanza = Stanza {
        tag: "X25519".into(),
        args: vec![share.to_string()],
        body: wrapped.to_vec(),
    };
    let file_key = match identity.unwrap(&stanza) {
        Some(Ok(file_key)) => file_key,
        _ => return Err(OpenError),
    };
    let key = data_key(&file_key, object_key)?;
    let mut buf = Zeroizing::new(body.to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| OpenError)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// A version-2 `config`: the version-1 fields and the owner's recipient.
#[derive(Serialize, Deserialize)]
struct WriteOnlyConfig {
    version: u32,
    id: String,
    chunker: ChunkerParams,
    pack_size: u32,
    compression_level: i32,
    /// The owner's `age1…` recipient: every data key is wrapped to it.
    owner: String,
}

/// `hosts/<id>`: a host's secret sealed to the owner (so the owner can derive the host's keys).
#[derive(Serialize, Deserialize)]
struct HostObject {
    /// The owner's recipient the secret is sealed to.
    recipient: String,
    /// The host secret, owner-sealed with the object's name as associated data.
    #[serde(with = "serde_bytes")]
    sealed_secret: Vec<u8>,
    /// Host name and time of provisioning (shown to the owner; not secret).
    host: String,
    created_ns: i64,
}

impl HostObject {
    fn decode(name: &str, bytes: &[u8]) -> Result<HostObject> {
        let object: HostObject = format::decode(name, bytes)?;
        if format::encode(&object) != bytes {
            return Err(Error::corrupt(name, "damaged: does not decode exactly"));
        }
        Ok(object)
    }
}

impl Repository {
    /// Creates a write-only repository (run it on the host): only `owner`'s identity will read
    /// what is stored; `host_key` (from [`HostKey::generate`], kept on the host) lets the
    /// host add backups. The host key is uploaded only sealed to `owner`.
    ///
    /// Refuses an existing repository ([`Error::RepositoryExists`]) and a location holding
    /// anything but `hosts/` objects left by an init killed before its `config`
    /// ([`Error::NotEmpty`]).
    pub async fn init_write_only(
        store: Arc<dyn ObjectStore>,
        location: impl Into<String>,
        owner: &X25519Recipient,
        host_key: &HostKey,
        options: InitOptions,
    ) -> Result<Repository> {
        let location = location.into();
        let (chunker, pack_size, compression_level) = options.write_only_params()?;
        let mut listing = store.list(None);
        while let Some(meta) = listing
            .try_next()
            .await
            .map_err(|e| Error::store(&location, e))?
        {
            let name = meta.location.to_string();
            if name == CONFIG {
                return Err(Error::RepositoryExists { location });
            }
            if !is_object_name(HOSTS, &name) {
                return Err(Error::NotEmpty {
                    location,
                    found: name,
                });
            }
        }
        drop(listing);
        let stored = WriteOnlyConfig {
            version: WRITE_ONLY_FORMAT_VERSION,
            id: format::random_id(),
            chunker,
            pack_size,
            compression_level,
            owner: owner.to_string(),
        };
        let name = format!("{HOSTS}/{}", format::random_id());
        let mut sealed_secret = Vec::new();
        seal_to_owner(
            owner,
            None,
            name.as_bytes(),
            host_key.secret.as_ref(),
            &mut sealed_secret,
        )?;
        let object = HostObject {
            recipient: owner.to_string(),
            sealed_secret,
            host: crate::backup::hostname(),
            created_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .and_then(|d| i64::try_from(d.as_nanos()).ok())
                .unwrap_or(0),
        };
        put_create(store.as_ref(), &location, &name, format::encode(&object)).await?;
        let repo = assemble(
            store.clone(),
            location.clone(),
            stored,
            host_key,
            None,
            name,
        )?;
        let config_bytes = repo.keys.cipher.seal(
            CONFIG.as_bytes(),
            &format::encode(&WriteOnlyConfig {
                version: WRITE_ONLY_FORMAT_VERSION,
                id: repo.config.id.clone(),
                chunker,
                pack_size,
                compression_level,
                owner: owner.to_string(),
            }),
        )?;
        put_create(repo.store.as_ref(), &location, CONFIG, config_bytes).await?;
        Ok(repo)
    }

    /// Whether the repository is write-only (version 2, sealed to an owner's public key).
    pub fn is_write_only(&self) -> bool {
        self.keys.cipher.owner.is_some()
    }

    /// [`Error::WriteOnly`] when this handle is a write-only host's: called first by every
    /// operation that reads stored snapshots, trees or data.
    pub(crate) fn refuse_if_write_only(&self, operation: &'static str) -> Result<()> {
        match &self.keys.cipher.owner {
            Some(owner) if !owner.can_open() => Err(Error::WriteOnly {
                location: self.location().to_string(),
                operation,
            }),
            _ => Ok(()),
        }
    }
}

impl InitOptions {
    /// The chunker, pack size and compression level, checked ([`InitOptions::build`]); copying
    /// another repository's parameters (and master secret) makes no write-only repository.
    fn write_only_params(self) -> Result<(ChunkerParams, u32, i32)> {
        let options = self.build()?;
        if options.shares_master() {
            return Err(Error::Config(
                "a write-only repository cannot share another repository's keys (--copy-params-from)"
                    .into(),
            ));
        }
        Ok(options.params())
    }
}

/// Creates object `name` (create-only: an existing `config` is [`Error::RepositoryExists`]).
async fn put_create(
    store: &dyn ObjectStore,
    location: &str,
    name: &str,
    bytes: Vec<u8>,
) -> Result<()> {
    match store
        .put_opts(
            &ObjectPath::from(name),
            bytes.into(),
            PutOptions::from(PutMode::Create),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) if name == CONFIG => {
            Err(Error::RepositoryExists {
                location: location.to_string(),
            })
        }
        Err(e) => Err(Error::store(name, e)),
    }
}

/// Builds the handle for a write-only repository from its config and host secret.
fn assemble(
    store: Arc<dyn ObjectStore>,
    location: String,
    stored: WriteOnlyConfig,
    host_key: &HostKey,
    identity: Option<X25519Identity>,
    key_name: String,
) -> Result<Repository> {
    let owner = parse_owner_recipient(&stored.owner)
        .map_err(|e| Error::corrupt(CONFIG, format!("owner recipient: {}", crate::report(&e))))?;
    let config = Config {
        version: stored.version,
        id: stored.id,
        chunker: stored.chunker,
        pack_size: stored.pack_size,
        compression_level: stored.compression_level,
    };
    let mut keys = Keys::derive(&host_key.secret, &config);
    keys.cipher.owner = Some(OwnerSeal::new(&host_key.secret, owner, identity));
    Ok(Repository::assemble(
        store, location, config, keys, key_name,
    ))
}

/// Whether the location holds `hosts/` objects (a write-only repository).
pub(crate) async fn has_hosts(store: &dyn ObjectStore) -> Result<bool> {
    Ok(!list_names(store, HOSTS).await?.is_empty())
}

/// [`Repository::open`] with [`KeySource::Host`] or [`KeySource::OwnerIdentity`].
pub(crate) async fn open(
    store: Arc<dyn ObjectStore>,
    location: String,
    key: &KeySource,
) -> Result<Repository> {
    let config_sealed = match store.get(&ObjectPath::from(CONFIG)).await {
        Ok(r) => r.bytes().await.map_err(|e| Error::store(CONFIG, e))?,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(Error::NoRepository { location });
        }
        Err(e) => return Err(Error::store(CONFIG, e)),
    };
    let opens_config = |secret: &[u8; MASTER_LEN]| {
        crate::cipher::RepoCipher::from_master(secret)
            .open(CONFIG.as_bytes(), &config_sealed)
            .ok()
    };
    let (host_key, identity, config_plain, key_name) = match key {
        KeySource::Host(host_key) => {
            let Some(plain) = opens_config(&host_key.secret) else {
                return Err(if has_hosts(store.as_ref()).await? {
                    Error::WrongKey
                } else {
                    Error::Config(format!(
                        "{location} is no write-only repository: open it with its password or key file"
                    ))
                });
            };
            (host_key.clone(), None, plain, String::new())
        }
        KeySource::OwnerIdentity(identity) => {
            let names = list_names(store.as_ref(), HOSTS).await?;
            if names.is_empty() {
                return Err(Error::Config(format!(
                    "{location} is no write-only repository (no hosts/ object): open it with its password or key file"
                )));
            }
            let mut found = None;
            let mut unwrapped_any = false;
            for name in names.iter().filter(|n| is_object_name(HOSTS, n)) {
                let bytes = get_bytes(store.as_ref(), name).await?;
                let object = match HostObject::decode(name, &bytes) {
                    Ok(object) => object,
                    Err(e) => {
                        tracing::warn!("skipping {name}: {}", crate::report(&e));
                        continue;
                    }
                };
                let Ok(secret) =
                    open_as_owner(identity, None, name.as_bytes(), &object.sealed_secret)
                else {
                    continue;
                };
                let Ok(secret) = <[u8; MASTER_LEN]>::try_from(secret.as_slice()) else {
                    return Err(Error::corrupt(name, "host secret has the wrong length"));
                };
                unwrapped_any = true;
                let host_key = HostKey {
                    secret: Zeroizing::new(secret),
                };
                // A host object left by an init killed before its config opens nothing.
                if let Some(plain) = opens_config(&host_key.secret) {
                    found = Some((host_key, plain, name.clone()));
                    break;
                }
            }
            match found {
                Some((host_key, plain, name)) => (host_key, Some(identity.clone()), plain, name),
                None if unwrapped_any => {
                    return Err(Error::corrupt(
                        CONFIG,
                        "fails authentication under every host secret this identity opens",
                    ));
                }
                None => return Err(Error::WrongKey),
            }
        }
        _ => return Err(Error::Config("not a write-only key".into())),
    };
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let Version { version } = format::decode(CONFIG, &config_plain)?;
    if version > WRITE_ONLY_FORMAT_VERSION {
        return Err(Error::NewerFormat {
            location,
            version,
            supported: WRITE_ONLY_FORMAT_VERSION,
        });
    }
    if version != WRITE_ONLY_FORMAT_VERSION {
        return Err(Error::corrupt(
            CONFIG,
            format!("format version {version} in a write-only repository (expected 2)"),
        ));
    }
    let stored: WriteOnlyConfig = format::decode(CONFIG, &config_plain)?;
    stored
        .chunker
        .validate()
        .map_err(|e| Error::corrupt(CONFIG, e.to_string()))?;
    if let Some(identity) = &identity
        && identity.to_public().to_string() != stored.owner
    {
        return Err(Error::corrupt(
            CONFIG,
            "names another owner than the identity that opened its host secret",
        ));
    }
    let repo = assemble(store, location, stored, &host_key, identity, key_name)?;
    crate::repo::check_sizes(repo.config.pack_size, repo.config.compression_level)
        .map_err(|reason| Error::corrupt(CONFIG, reason))?;
    repo.load_index().await?;
    Ok(repo)
}

/// The owner-side list of a repository's hosts (for messages and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostInfo {
    /// The `hosts/<id>` object's id.
    pub id: String,
    /// Host name at provisioning.
    pub host: String,
    /// When it was provisioned, ns since the epoch.
    pub created_ns: i64,
}

impl Repository {
    /// The hosts provisioned to write into this write-only repository (empty for others).
    pub async fn write_only_hosts(&self) -> Result<Vec<HostInfo>> {
        let mut hosts = Vec::new();
        for name in list_names(self.store.as_ref(), HOSTS).await? {
            if !is_object_name(HOSTS, &name) {
                continue;
            }
            let bytes = get_bytes(self.store.as_ref(), &name).await?;
            let object = HostObject::decode(&name, &bytes)?;
            hosts.push(HostInfo {
                id: name.trim_start_matches("hosts/").to_string(),
                host: object.host,
                created_ns: object.created_ns,
            });
        }
        Ok(hosts)
    }
}

/// The host's local record of its own last run: that run's snapshot and trees (names, sizes,
/// times and chunk ids of the host's own files, which it reads from its disk anyway), so the
/// next run skips unchanged files as with a parent snapshot, without reading anything back from
/// the repository. Sealed under the host's key-encryption key; a missing, damaged or stale
/// cache only costs a full re-read.
pub(crate) struct HostCache {
    path: PathBuf,
    /// The last run, if the file was there and opened.
    saved: Option<(String, Snapshot)>,
    trees: HashMap<ChunkId, Vec<u8>>,
    /// Trees written by this run, saved with its snapshot.
    written: Mutex<Vec<CachedTree>>,
}

#[derive(Serialize, Deserialize)]
struct CachedTree {
    id: ChunkId,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct SavedRun {
    /// The repository's config id (a cache of another repository is ignored).
    repository: String,
    snapshot_id: String,
    snapshot: Snapshot,
    trees: Vec<CachedTree>,
}

const CACHE_AAD: &[u8] = b"host-cache";

impl Repository {
    /// Keeps a write-only host's parent cache at `path` (see `FORMAT.md`): each backup saves
    /// its snapshot and trees there, and the next backup of the same host and paths uses them
    /// as its parent, so unchanged files are not read again. Only for a handle opened with a
    /// host key ([`KeySource::Host`]). A missing or unreadable file is no error (the next
    /// backup reads every file, and writes a new one).
    pub fn with_host_cache(mut self, path: impl Into<PathBuf>) -> Result<Repository> {
        if !matches!(&self.keys.cipher.owner, Some(owner) if !owner.can_open()) {
            return Err(Error::Config(
                "a parent cache is for a write-only host (a repository opened with a host key)"
                    .into(),
            ));
        }
        let path = path.into();
        let saved = match std::fs::read(&path) {
            Ok(bytes) => self.open_cache(&path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!("not using the parent cache {}: {e}", path.display());
                None
            }
        };
        let (saved, trees) = match saved {
            Some(run) => (
                Some((run.snapshot_id, run.snapshot)),
                run.trees.into_iter().map(|t| (t.id, t.data)).collect(),
            ),
            None => (None, HashMap::new()),
        };
        self.host_cache = Some(Box::new(HostCache {
            path,
            saved,
            trees,
            written: Mutex::new(Vec::new()),
        }));
        Ok(self)
    }

    fn open_cache(&self, path: &Path, bytes: &[u8]) -> Option<SavedRun> {
        let opened = self
            .keys
            .cipher
            .open(CACHE_AAD, bytes)
            .ok()
            .and_then(|plain| crate::compress::decode_object(&plain).ok())
            .and_then(|plain| format::decode::<SavedRun>("parent cache", &plain).ok());
        match opened {
            Some(run) if run.repository == self.config.id => Some(run),
            _ => {
                tracing::warn!(
                    "not using the parent cache {}: damaged, or of another repository",
                    path.display()
                );
                None
            }
        }
    }

    /// The parent from the host's cache, if it was of `host` and `paths` and every chunk its
    /// trees name is still indexed (the owner may have pruned since): call under the backup's
    /// lock, after the index is reloaded.
    pub(crate) fn host_cache_parent(
        &self,
        host: &str,
        paths: &[String],
    ) -> Result<Option<(String, Snapshot)>> {
        let Some(cache) = &self.host_cache else {
            return Ok(None);
        };
        let Some((id, snapshot)) = &cache.saved else {
            return Ok(None);
        };
        if snapshot.host != host || snapshot.paths != paths {
            return Ok(None);
        }
        let mut pending = vec![snapshot.tree];
        let mut seen = std::collections::HashSet::new();
        while let Some(tree_id) = pending.pop() {
            if !seen.insert(tree_id) {
                continue;
            }
            let Some(tree) = self.cached_tree(&tree_id)? else {
                tracing::warn!("parent cache lacks tree {tree_id}: reading every file");
                return Ok(None);
            };
            for node in &tree.nodes {
                if let Some(missing) = node.content.iter().find(|c| !self.has_blob(c)) {
                    tracing::warn!(
                        "parent cache names chunk {missing}, no longer stored (pruned?): reading every file"
                    );
                    return Ok(None);
                }
                pending.extend(node.subtree);
            }
        }
        Ok(Some((id.clone(), snapshot.clone())))
    }

    /// A tree from the host's parent cache.
    pub(crate) fn cached_tree(&self, id: &ChunkId) -> Result<Option<Tree>> {
        let Some(data) = self.host_cache.as_ref().and_then(|c| c.trees.get(id)) else {
            return Ok(None);
        };
        format::decode(&format!("cached tree {id}"), data).map(Some)
    }

    /// Records a tree this run wrote, for the parent cache.
    pub(crate) fn record_tree(&self, id: &ChunkId, data: &[u8]) -> Result<()> {
        if let Some(cache) = &self.host_cache {
            cache
                .written
                .lock()
                .map_err(crate::repo::poisoned)?
                .push(CachedTree {
                    id: *id,
                    data: data.to_vec(),
                });
        }
        Ok(())
    }

    /// Saves this run's snapshot and trees as the next run's parent (replacing the file
    /// atomically); failing to is a warning, not a failed backup.
    pub(crate) fn save_host_cache(&self, snapshot_id: &str, snapshot: &Snapshot) {
        let Some(cache) = &self.host_cache else {
            return;
        };
        let trees = match cache.written.lock() {
            Ok(mut written) => std::mem::take(&mut *written),
            Err(_) => return,
        };
        let run = SavedRun {
            repository: self.config.id.clone(),
            snapshot_id: snapshot_id.to_string(),
            snapshot: snapshot.clone(),
            trees,
        };
        let saved = self
            .keys
            .cipher
            .seal(
                CACHE_AAD,
                &crate::compress::encode_object(&format::encode(&run)),
            )
            .and_then(|sealed| write_replacing(&cache.path, &sealed));
        if let Err(e) = saved {
            tracing::warn!(
                "saving the parent cache {}: {} (the next backup reads every file)",
                cache.path.display(),
                crate::report(&e)
            );
        }
    }
}

/// Writes `bytes` to a fresh temporary file beside `path` (mode 0600), syncs it and renames it
/// over `path`.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", format::random_id()));
    let tmp = PathBuf::from(tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> (X25519Identity, [u8; 32]) {
        (X25519Identity::generate().unwrap(), [7u8; 32])
    }

    #[test]
    fn an_owner_sealed_object_opens_only_whole_under_its_name_key_and_host() {
        let (identity, object_key) = owner();
        let mut sealed = Vec::new();
        seal_to_owner(
            &identity.to_public(),
            Some(&object_key),
            b"snapshots/x",
            b"plaintext",
            &mut sealed,
        )
        .unwrap();
        assert_eq!(sealed.len(), OWNER_OVERHEAD + b"plaintext".len());
        let opened = open_as_owner(&identity, Some(&object_key), b"snapshots/x", &sealed);
        assert_eq!(opened.unwrap().as_slice(), b"plaintext");
        // Another name, another host's object key, another identity, no host binding.
        assert!(open_as_owner(&identity, Some(&object_key), b"snapshots/y", &sealed).is_err());
        assert!(open_as_owner(&identity, Some(&[8u8; 32]), b"snapshots/x", &sealed).is_err());
        let stranger = X25519Identity::generate().unwrap();
        assert!(open_as_owner(&stranger, Some(&object_key), b"snapshots/x", &sealed).is_err());
        assert!(open_as_owner(&identity, None, b"snapshots/x", &sealed).is_err());
        // Every truncation and every flipped bit fails, without a panic.
        for len in 0..sealed.len() {
            assert!(
                open_as_owner(&identity, Some(&object_key), b"snapshots/x", &sealed[..len])
                    .is_err()
            );
        }
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut damaged = sealed.clone();
                damaged[i] ^= 1 << bit;
                assert!(
                    open_as_owner(&identity, Some(&object_key), b"snapshots/x", &damaged).is_err(),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn which_objects_are_sealed_to_the_owner() {
        for aad in [&b"blob:0123"[..], b"snapshots/ab", b"data/ab/abcd#header"] {
            assert!(is_owner_object(aad));
        }
        for aad in [
            &b"config"[..],
            b"index/ab",
            b"locks/ab",
            b"locks/exclusive",
            b"keys/ab",
        ] {
            assert!(!is_owner_object(aad));
        }
    }
}
