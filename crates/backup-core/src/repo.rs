//! Opening and creating repositories; reading and writing their objects.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::chunker::{Chunker, ChunkerParams};
use crate::cipher::{KeyObject, KeySource, MASTER_LEN, RepoCipher};
use crate::compress::BlobDecoder;
use crate::error::{Error, Result};
use crate::format::{
    self, ChunkId, Config, FORMAT_VERSION, GroupRef, IndexFile, IndexPack, Snapshot, Tree,
};

const CONFIG: &str = "config";

/// Options for [`Repository::init`].
#[derive(Debug, Clone)]
pub struct InitOptions {
    chunker: ChunkerParams,
    pack_size: u32,
    compression_level: i32,
    /// The master secret of the repository whose parameters are copied
    /// ([`InitOptions::with_params_from`]).
    shared_master: Option<crate::copy::SharedMaster>,
    /// The parameters were taken from a write-only repository (refused by `build`).
    from_write_only: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            pack_size: 8 * 1024 * 1024,
            compression_level: 1,
            shared_master: None,
            from_write_only: false,
        }
    }
}

impl InitOptions {
    /// Default options: chunks of 512 KiB to 2 MiB (1 MiB average), 8 MiB packs, zstd level 1
    /// (small files are compressed in groups, which gains more than higher levels: see FORMAT.md).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the chunk size bounds.
    pub fn with_chunker(mut self, params: ChunkerParams) -> Self {
        self.chunker = params;
        self
    }

    /// Sets the target pack size in bytes.
    pub fn with_pack_size(mut self, bytes: u32) -> Self {
        self.pack_size = bytes;
        self
    }

    /// Sets the zstd level (1 to 19).
    pub fn with_compression_level(mut self, level: i32) -> Self {
        self.compression_level = level;
        self
    }

    /// Takes `source`'s chunker bounds, pack size, zstd level and master secret, so that
    /// [`crate::copy::copy`] can move its snapshots here without re-chunking or re-encrypting
    /// (the tool's `init --copy-params-from`). The new repository still gets its own key object
    /// (its own passphrase or key file) and its own config id.
    pub fn with_params_from(mut self, source: &Repository) -> Self {
        self.chunker = source.config.chunker;
        self.pack_size = source.config.pack_size;
        self.compression_level = source.config.compression_level;
        self.shared_master = Some(crate::copy::SharedMaster::of(source));
        self.from_write_only = source.is_write_only();
        self
    }

    /// Checks the options.
    pub fn build(self) -> Result<Self> {
        if self.from_write_only {
            return Err(Error::Config(
                "a write-only repository shares its keys with no other repository (copy does not support it)".into(),
            ));
        }
        self.chunker.validate()?;
        check_sizes(self.pack_size, self.compression_level).map_err(Error::Config)?;
        Ok(self)
    }
}

/// Checks a pack size and a zstd level, at init and when a repository's config is read.
pub(crate) fn check_sizes(
    pack_size: u32,
    compression_level: i32,
) -> std::result::Result<(), String> {
    if !(64 * 1024..=1 << 30).contains(&pack_size) {
        return Err(format!("pack size {pack_size} outside 64 KiB..1 GiB"));
    }
    if !(1..=19).contains(&compression_level) {
        return Err(format!("zstd level {compression_level} outside 1..19"));
    }
    Ok(())
}

/// The reason recorded for an object listed but gone when read (a concurrent forget).
pub(crate) const VANISHED: &str = "vanished while being read";

/// Index, snapshot or key objects loaded at once while opening or listing.
const OBJECT_LOADS: usize = 32;

/// A repository object that was skipped because it is damaged or is no repository object at
/// all (a stray file such as `snapshots/.DS_Store`); see [`Repository::skipped_objects`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedObject {
    /// The object's name in the store (`index/…`, `snapshots/…`, `keys/…`).
    pub object: String,
    /// Why it was skipped.
    pub reason: String,
}

/// Whether `name` is `<dir>/` followed by an object id (32 lowercase hex digits).
pub(crate) fn is_object_name(dir: &str, name: &str) -> bool {
    name.strip_prefix(dir)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|id| {
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Just the version of a config, read before the rest so that a newer format is reported as
/// newer even if the rest of its config no longer decodes as this version's.
#[derive(serde::Deserialize)]
struct ConfigVersion {
    version: u32,
}

/// Where a blob is stored.
#[derive(Debug, Clone)]
pub(crate) struct BlobLocation {
    pub(crate) pack: Arc<str>,
    pub(crate) offset: u32,
    pub(crate) length: u32,
    pub(crate) raw_length: u32,
    pub(crate) group: Option<GroupRef>,
}

impl BlobLocation {
    /// Stored bytes attributed to this blob: its sealed frame, or its share of its group's.
    pub(crate) fn stored_share(&self) -> u64 {
        match &self.group {
            Some(g) if g.raw_length > 0 => {
                u64::from(self.length) * u64::from(self.raw_length) / u64::from(g.raw_length)
            }
            _ => u64::from(self.length),
        }
    }
}

/// The secrets derived from the master key.
pub(crate) struct Keys {
    /// The master secret, kept to wrap it for new keys (`key add`, `key passwd`).
    master: Zeroizing<[u8; MASTER_LEN]>,
    pub(crate) cipher: RepoCipher,
    id_key: Zeroizing<[u8; 32]>,
    group_key: Zeroizing<[u8; 32]>,
    pub(crate) chunker: Chunker,
}

impl Keys {
    pub(crate) fn derive(master: &[u8; MASTER_LEN], config: &Config) -> Self {
        let id_key = Zeroizing::new(blake3::derive_key(
            "hostguard backup-core chunk id key",
            master,
        ));
        let gear_key = Zeroizing::new(blake3::derive_key(
            "hostguard backup-core chunker gear key",
            master,
        ));
        let group_key = Zeroizing::new(blake3::derive_key(
            "hostguard backup-core group id key",
            master,
        ));
        Keys {
            master: Zeroizing::new(*master),
            cipher: RepoCipher::from_master(master),
            id_key,
            group_key,
            chunker: Chunker::new(config.chunker, &gear_key),
        }
    }

    /// Whether both were derived from the same master secret (so chunk ids, group ids and
    /// sealed frames are interchangeable: see `copy`).
    pub(crate) fn same_master(&self, other: &Keys) -> bool {
        *self.master == *other.master
    }

    /// The master secret (for `init` with another repository's parameters).
    pub(crate) fn master(&self) -> &[u8; MASTER_LEN] {
        &self.master
    }

    /// The keyed id of a plaintext blob.
    pub(crate) fn chunk_id(&self, data: &[u8]) -> ChunkId {
        ChunkId(*blake3::keyed_hash(&self.id_key, data).as_bytes())
    }

    /// The id of a group: a keyed hash of its members' ids and places (`(id, start, length)`),
    /// not of its bytes, which the members' own ids already cover (hashing them again cost
    /// about 3 % of a backup's CPU time).
    pub(crate) fn group_id(&self, members: &[(ChunkId, u32, u32)]) -> ChunkId {
        let mut hasher = blake3::Hasher::new_keyed(&self.group_key);
        for (id, start, length) in members {
            hasher.update(&id.0);
            hasher.update(&start.to_le_bytes());
            hasher.update(&length.to_le_bytes());
        }
        ChunkId(*hasher.finalize().as_bytes())
    }
}

/// An open repository on an object store.
pub struct Repository {
    pub(crate) store: Arc<dyn ObjectStore>,
    location: String,
    pub(crate) config: Config,
    pub(crate) keys: Arc<Keys>,
    pub(crate) index: RwLock<HashMap<ChunkId, BlobLocation>>,
    /// Index objects loaded (none: the index is missing).
    index_objects: AtomicUsize,
    /// Damaged or foreign objects skipped so far, by name.
    pub(crate) skipped: Mutex<BTreeMap<String, String>>,
    /// The `keys/` object this repository was opened (or created) with.
    pub(crate) key_name: Mutex<String>,
    /// The index objects loaded, by name (to see whether a prune replaced them).
    index_names: Mutex<Vec<String>>,
    /// Opened through [`crate::AppendOnlyStore`] by [`Repository::open_append_only`]: deleting
    /// operations are refused up front.
    pub(crate) append_only: bool,
    /// A write-only host's parent cache ([`Repository::with_host_cache`]).
    pub(crate) host_cache: Option<Box<crate::write_only::HostCache>>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.location)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Repository {
    /// A handle on an opened or created repository (for `write_only`).
    pub(crate) fn assemble(
        store: Arc<dyn ObjectStore>,
        location: String,
        config: Config,
        keys: Keys,
        key_name: String,
    ) -> Repository {
        Repository {
            store,
            location,
            config,
            keys: Arc::new(keys),
            index: RwLock::new(HashMap::new()),
            index_objects: AtomicUsize::new(0),
            skipped: Mutex::new(BTreeMap::new()),
            key_name: Mutex::new(key_name),
            index_names: Mutex::new(Vec::new()),
            append_only: false,
            host_cache: None,
        }
    }
}

impl InitOptions {
    /// Chunker, pack size and compression level (for `write_only`).
    pub(crate) fn params(&self) -> (ChunkerParams, u32, i32) {
        (self.chunker, self.pack_size, self.compression_level)
    }

    /// Whether another repository's master secret is to be shared (for `write_only`).
    pub(crate) fn shares_master(&self) -> bool {
        self.shared_master.is_some()
    }
}

pub(crate) fn blob_aad(id: &ChunkId) -> Vec<u8> {
    let mut aad = b"blob:".to_vec();
    aad.extend_from_slice(&id.0);
    aad
}

impl Repository {
    /// Creates a repository; refuses (with [`Error::RepositoryExists`]) if one is already there,
    /// and (with [`Error::NotEmpty`]) a location holding anything else. An empty passphrase is
    /// refused.
    ///
    /// The key object is written first and `config` last (create-only, the atomic "does a
    /// repository exist"), so an `init` killed part-way leaves nothing or a key object without
    /// a config: a location holding only such keys counts as empty, and an `init` rerun with
    /// the same password or key file reuses the master secret of the key it opens. A `config`
    /// with nothing else at all (not even a key: what a killed `init` of earlier versions left,
    /// which nothing can ever open) is replaced.
    ///
    /// `location` names the store in messages (a path or URL).
    pub async fn init(
        store: Arc<dyn ObjectStore>,
        location: impl Into<String>,
        key: &KeySource,
        options: InitOptions,
    ) -> Result<Repository> {
        let location = location.into();
        let options = options.build()?;
        if key.is_empty_passphrase() {
            return Err(Error::Config(
                "empty passphrase: a repository needs a non-empty one".into(),
            ));
        }
        let config_exists = match store.head(&ObjectPath::from(CONFIG)).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(Error::store(CONFIG, e)),
        };
        let leftover_keys = match leftover_keys(store.as_ref(), &location).await {
            // A config alone, with no key that could ever open it: what an init of earlier
            // versions (config first) left when killed. Nothing can read it; it is replaced.
            Err(Error::NotEmpty { found, .. }) if config_exists && found == CONFIG => {
                if !only_object_is_config(store.as_ref(), &location).await? {
                    return Err(Error::RepositoryExists { location });
                }
                Vec::new()
            }
            _ if config_exists => return Err(Error::RepositoryExists { location }),
            other => other?,
        };
        let replace_config = config_exists;
        let mut reused = None;
        for name in &leftover_keys {
            match unwrap_key(store.as_ref(), name, key).await {
                Ok(Some(master)) => {
                    reused = Some((master, name.clone()));
                    break;
                }
                // Another key, or a damaged one: passed over, as open does.
                Ok(None) | Err(Error::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let key_written = reused.as_ref().map(|(_, name)| name.clone());
        let master = match reused {
            Some((master, _)) => master,
            None => match &options.shared_master {
                // The source's secret for `init --copy-params-from` (see `copy`).
                Some(shared) => shared.secret(),
                None => random_master()?,
            },
        };
        let config = Config {
            version: FORMAT_VERSION,
            id: format::random_id(),
            chunker: options.chunker,
            pack_size: options.pack_size,
            compression_level: options.compression_level,
        };
        let keys = Arc::new(Keys::derive(&master, &config));
        let repo = Repository {
            store,
            location,
            config,
            keys,
            index: RwLock::new(HashMap::new()),
            index_objects: AtomicUsize::new(0),
            skipped: Mutex::new(BTreeMap::new()),
            key_name: Mutex::new(key_written.clone().unwrap_or_default()),
            index_names: Mutex::new(Vec::new()),
            append_only: false,
            host_cache: None,
        };
        if key_written.is_none() {
            let name = repo.write_key(key).await?;
            *repo.key_name.lock().map_err(poisoned)? = name;
        }
        let config_bytes = repo
            .keys
            .cipher
            .seal(CONFIG.as_bytes(), &format::encode(&repo.config))?;
        let mode = if replace_config {
            PutMode::Overwrite
        } else {
            PutMode::Create
        };
        match repo
            .store
            .put_opts(
                &ObjectPath::from(CONFIG),
                config_bytes.into(),
                PutOptions::from(mode),
            )
            .await
        {
            Ok(_) => Ok(repo),
            // Another init won the race; the key written here opens nothing and is ignored.
            Err(object_store::Error::AlreadyExists { .. }) => Err(Error::RepositoryExists {
                location: repo.location,
            }),
            Err(e) => Err(Error::store(CONFIG, e)),
        }
    }

    /// Writes a new key object wrapping the master secret for `key`; returns its name.
    pub(crate) async fn write_key(&self, key: &KeySource) -> Result<String> {
        let name = format!("keys/{}", format::random_id());
        let object = key.wrap(&self.keys.master, &name)?;
        self.put(&name, format::encode(&object), true).await?;
        Ok(name)
    }

    /// Opens the repository with a passphrase or key file.
    ///
    /// Index objects are loaded a bounded number at a time. A damaged index object, or a file
    /// in `index/` or `keys/` that is no repository object, is skipped and reported by
    /// [`Repository::skipped_objects`] (and logged); failures of the store itself are errors.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        location: impl Into<String>,
        key: &KeySource,
    ) -> Result<Repository> {
        let location = location.into();
        if key.is_write_only() {
            return crate::write_only::open(store, location, key).await;
        }
        let config_sealed = match store.get(&ObjectPath::from(CONFIG)).await {
            Ok(r) => r.bytes().await.map_err(|e| Error::store(CONFIG, e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::NoRepository { location });
            }
            Err(e) => return Err(Error::store(CONFIG, e)),
        };
        let skipped = Mutex::new(BTreeMap::new());
        let mut key_names = Vec::new();
        for name in list_names(store.as_ref(), "keys").await? {
            if is_object_name("keys", &name) {
                key_names.push(name);
            } else {
                skip(&skipped, &name, "not a repository key object");
            }
        }
        if key_names.is_empty() {
            if crate::write_only::has_hosts(store.as_ref()).await? {
                return Err(Error::WriteOnly {
                    location,
                    operation: "opening it with a password or key file",
                });
            }
            return Err(Error::NoKeys { location });
        }
        let mut opened = None;
        let mut unwrapped_any = false;
        for name in &key_names {
            let master = match unwrap_key(store.as_ref(), name, key).await {
                Ok(Some(master)) => {
                    unwrapped_any = true;
                    master
                }
                Ok(None) => continue,
                Err(Error::Corrupt { reason, .. }) => {
                    skip(&skipped, name, &reason);
                    continue;
                }
                Err(e) => return Err(e),
            };
            // A key left by an init killed before its config, or by one that lost a race,
            // opens but holds another master secret: the config tells them apart.
            if let Ok(plain) =
                RepoCipher::from_master(&master).open(CONFIG.as_bytes(), &config_sealed)
            {
                opened = Some((master, plain, name.clone()));
                break;
            }
        }
        let (master, config_plain, key_name) = match opened {
            Some(opened) => opened,
            None if unwrapped_any => {
                return Err(Error::corrupt(
                    CONFIG,
                    "fails authentication under every key this password or key file opens",
                ));
            }
            None => {
                // A damaged key may be the one this password or key file opens: say so (a
                // checksum is no secret), rather than "wrong password".
                let damaged: Vec<String> = skipped
                    .lock()
                    .map_err(poisoned)?
                    .iter()
                    .filter(|(name, _)| is_object_name("keys", name))
                    .map(|(name, _)| name.clone())
                    .collect();
                if damaged.is_empty() {
                    return Err(Error::WrongKey);
                }
                return Err(Error::corrupt(
                    damaged.join(", "),
                    "damaged, and no undamaged key opens with this password or key file",
                ));
            }
        };
        let ConfigVersion { version } = format::decode(CONFIG, &config_plain)?;
        if version > FORMAT_VERSION {
            return Err(Error::NewerFormat {
                location,
                version,
                supported: FORMAT_VERSION,
            });
        }
        if version != FORMAT_VERSION {
            return Err(Error::corrupt(
                CONFIG,
                format!("unknown format version {version}"),
            ));
        }
        let config: Config = format::decode(CONFIG, &config_plain)?;
        config
            .chunker
            .validate()
            .map_err(|e| Error::corrupt(CONFIG, e.to_string()))?;
        check_sizes(config.pack_size, config.compression_level)
            .map_err(|reason| Error::corrupt(CONFIG, reason))?;
        let repo = Repository {
            store,
            location,
            keys: Arc::new(Keys::derive(&master, &config)),
            config,
            index: RwLock::new(HashMap::new()),
            index_objects: AtomicUsize::new(0),
            skipped,
            key_name: Mutex::new(key_name),
            index_names: Mutex::new(Vec::new()),
            append_only: false,
            host_cache: None,
        };
        repo.load_index().await?;
        Ok(repo)
    }

    /// Objects skipped so far because they are damaged or no repository objects, with the
    /// reason, in name order: index and key objects when opening, snapshots when listing.
    pub fn skipped_objects(&self) -> Vec<SkippedObject> {
        self.skipped
            .lock()
            .map(|s| {
                s.iter()
                    .map(|(object, reason)| SkippedObject {
                        object: object.clone(),
                        reason: reason.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Loads every object in `dir` (`index` or `snapshots`), a bounded number at a time; skips
    /// and records foreign names and objects that are damaged or vanished meanwhile.
    pub(crate) async fn load_objects<T: serde::de::DeserializeOwned>(
        &self,
        dir: &str,
    ) -> Result<Vec<(String, T)>> {
        let names = self.object_names(dir).await?;
        self.load_each(names, OBJECT_LOADS).try_collect().await
    }

    /// The names of the objects in `dir`, sorted; foreign names are skipped and recorded.
    pub(crate) async fn object_names(&self, dir: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for name in list_names(self.store.as_ref(), dir).await? {
            if is_object_name(dir, &name) {
                names.push(name);
            } else {
                skip(&self.skipped, &name, "not a repository object");
            }
        }
        Ok(names)
    }

    /// Loads the objects `names`, at most `loads` at a time, in the order they arrive (so a
    /// caller can handle each and let it go: `check` streams the index this way); skips and
    /// records objects that are damaged or vanished meanwhile.
    pub(crate) fn load_each<'a, T: serde::de::DeserializeOwned + 'a>(
        &'a self,
        names: Vec<String>,
        loads: usize,
    ) -> impl futures::Stream<Item = Result<(String, T)>> + 'a {
        futures::stream::iter(names)
            .map(move |name| async move {
                let loaded = self.get_sealed::<T>(&name).await;
                (name, loaded)
            })
            .buffer_unordered(loads)
            .filter_map(move |(name, result)| async move {
                match result {
                    Ok(value) => Some(Ok((name, value))),
                    Err(Error::Corrupt { reason, .. }) => {
                        skip(&self.skipped, &name, &reason);
                        None
                    }
                    Err(Error::NotFound { .. }) => {
                        skip(&self.skipped, &name, VANISHED);
                        None
                    }
                    Err(e) => Some(Err(e)),
                }
            })
    }

    /// The location string given at open or init.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The repository's config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The underlying object store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Loads every index object into the in-memory index, each inserted and let go as it
    /// arrives: with 2.1 million blobs, holding every decoded object until all had loaded took
    /// about 250 MB more at the peak.
    pub(crate) async fn load_index(&self) -> Result<()> {
        let names = self.object_names("index").await?;
        // A reload (after a prune) starts from an empty index.
        self.index.write().map_err(poisoned)?.clear();
        let mut files = std::pin::pin!(self.load_each::<IndexFile>(names, OBJECT_LOADS));
        let mut loaded = Vec::new();
        while let Some((name, file)) = files.try_next().await? {
            let mut index = self.index.write().map_err(poisoned)?;
            for pack in file.packs {
                insert_pack(&mut index, &pack);
            }
            loaded.push(name);
        }
        self.index_objects.store(loaded.len(), Ordering::Relaxed);
        *self.index_names.lock().map_err(poisoned)? = loaded;
        Ok(())
    }

    /// Loads the index again if an index object that was loaded is gone (a prune replaced
    /// it since), so that nothing is deduplicated against data the prune deleted. Call it
    /// under a lock.
    pub(crate) async fn reload_index_if_pruned(&self) -> Result<()> {
        let now: std::collections::HashSet<String> = list_names(self.store.as_ref(), "index")
            .await?
            .into_iter()
            .collect();
        let gone = self
            .index_names
            .lock()
            .map_err(poisoned)?
            .iter()
            .any(|name| !now.contains(name));
        if gone {
            self.load_index().await?;
        }
        Ok(())
    }

    pub(crate) fn add_to_index(&self, pack: &IndexPack) -> Result<()> {
        insert_pack(&mut *self.index.write().map_err(poisoned)?, pack);
        self.index_objects.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Replaces the in-memory index by `packs`, now listed by `objects` index objects (after
    /// `repair index`).
    pub(crate) fn replace_index(&self, packs: &[IndexPack], objects: usize) -> Result<()> {
        let mut index = self.index.write().map_err(poisoned)?;
        index.clear();
        for pack in packs {
            insert_pack(&mut index, pack);
        }
        self.index_objects.store(objects, Ordering::Relaxed);
        Ok(())
    }

    /// Whether a blob with this id is stored.
    pub(crate) fn has_blob(&self, id: &ChunkId) -> bool {
        self.index.read().is_ok_and(|i| i.contains_key(id))
    }

    pub(crate) fn locate(&self, id: &ChunkId) -> Result<BlobLocation> {
        if let Some(location) = self.index.read().map_err(poisoned)?.get(id) {
            return Ok(location.clone());
        }
        if self.index_objects.load(Ordering::Relaxed) == 0 {
            return Err(Error::IndexMissing {
                location: self.location.clone(),
            });
        }
        Err(Error::NotFound {
            what: format!("blob {id} (not in any index)"),
        })
    }

    /// Writes an object; `create_only` makes an existing object an error.
    pub(crate) async fn put(
        &self,
        name: &str,
        bytes: impl Into<PutPayload>,
        create_only: bool,
    ) -> Result<()> {
        let mode = if create_only {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        self.store
            .put_opts(
                &ObjectPath::from(name),
                bytes.into(),
                PutOptions::from(mode),
            )
            .await
            .map_err(|e| Error::store(name, e))?;
        Ok(())
    }

    /// Seals `value` under its own name and writes it.
    pub(crate) async fn put_sealed<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let sealed = self.keys.cipher.seal(
            name.as_bytes(),
            &crate::compress::encode_object(&format::encode(value)),
        )?;
        self.put(name, sealed, true).await
    }

    /// Reads, opens, decompresses and decodes a whole object (index, snapshot).
    pub(crate) async fn get_sealed<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T> {
        let bytes = get_bytes(self.store.as_ref(), name).await?;
        let plain = self
            .keys
            .cipher
            .open(name.as_bytes(), &bytes)
            .map_err(|_| Error::corrupt(name, "fails authentication (damaged or tampered)"))?;
        let plain = crate::compress::decode_object(&plain)
            .map_err(|reason| Error::corrupt(name, reason))?;
        format::decode(name, &plain)
    }

    /// Reads one blob, checks it against its id and returns its plaintext.
    pub async fn load_blob(&self, id: &ChunkId) -> Result<Vec<u8>> {
        self.refuse_if_write_only("reading stored data")?;
        let loc = self.locate(id)?;
        let path = format::pack_path(&loc.pack);
        let range = u64::from(loc.offset)..u64::from(loc.offset) + u64::from(loc.length);
        let sealed = self
            .store
            .get_range(&ObjectPath::from(path.as_str()), range)
            .await
            .map_err(|e| Error::store(&path, e))?;
        self.decode_blob(id, &loc, &path, &sealed)
    }

    /// Opens, decompresses and verifies the sealed frame holding blob `id` (read from pack
    /// `path`), and returns the blob's plaintext.
    pub(crate) fn decode_blob(
        &self,
        id: &ChunkId,
        loc: &BlobLocation,
        path: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>> {
        match &loc.group {
            Some(group) => {
                let decoded = self.open_group(group, path, sealed)?;
                self.cut_member(id, loc, path, &decoded).map(<[u8]>::to_vec)
            }
            None => {
                let mut decoder = BlobDecoder::default();
                self.decode_frame_with(id, loc.raw_length, path, sealed, &mut decoder)
                    .map(<[u8]>::to_vec)
            }
        }
    }

    /// Opens and decompresses a group's frame. Its bytes are not hashed as a whole: each member
    /// is checked against its own id when cut out ([`Repository::cut_member`]).
    pub(crate) fn open_group(
        &self,
        group: &GroupRef,
        path: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>> {
        let mut decoder = BlobDecoder::default();
        self.open_frame_with(&group.id, group.raw_length, path, sealed, &mut decoder)
            .map(<[u8]>::to_vec)
    }

    /// Opens, decompresses and verifies one sealed blob whose plaintext hashes to `id`, with a
    /// thread's reusable buffers; the bytes live in `decoder`.
    pub(crate) fn decode_frame_with<'d>(
        &self,
        id: &ChunkId,
        raw_length: u32,
        path: &str,
        sealed: &[u8],
        decoder: &'d mut BlobDecoder,
    ) -> Result<&'d [u8]> {
        let data = self.open_frame_with(id, raw_length, path, sealed, decoder)?;
        if self.keys.chunk_id(data) != *id {
            return Err(Error::corrupt(
                format!("{path} (blob {id})"),
                "content does not match its id",
            ));
        }
        Ok(data)
    }

    /// Opens (bound to `id`) and decompresses one sealed frame.
    pub(crate) fn open_frame_with<'d>(
        &self,
        id: &ChunkId,
        raw_length: u32,
        path: &str,
        sealed: &[u8],
        decoder: &'d mut BlobDecoder,
    ) -> Result<&'d [u8]> {
        let object = || format!("{path} (blob {id})");
        self.keys
            .cipher
            .open_into(&blob_aad(id), sealed, &mut decoder.plain)
            .map_err(|_| Error::corrupt(object(), "blob fails authentication"))?;
        decoder
            .decode(raw_length as usize)
            .map_err(|reason| Error::corrupt(object(), reason))
    }

    /// Cuts grouped blob `id` out of its decoded group and checks it against its id.
    pub(crate) fn cut_member<'g>(
        &self,
        id: &ChunkId,
        loc: &BlobLocation,
        path: &str,
        group: &'g [u8],
    ) -> Result<&'g [u8]> {
        let object = || format!("{path} (blob {id})");
        let start = loc.group.map_or(0, |g| g.start as usize);
        let member = group
            .get(start..start.saturating_add(loc.raw_length as usize))
            .ok_or_else(|| Error::corrupt(object(), "lies outside its group"))?;
        if self.keys.chunk_id(member) != *id {
            return Err(Error::corrupt(object(), "content does not match its id"));
        }
        Ok(member)
    }

    /// Loads a tree blob.
    pub async fn load_tree(&self, id: &ChunkId) -> Result<Tree> {
        if let Some(tree) = self.cached_tree(id)? {
            return Ok(tree);
        }
        let bytes = self.load_blob(id).await?;
        let tree: Tree = format::decode(&format!("tree {id}"), &bytes)?;
        Ok(tree)
    }

    /// All snapshots, oldest first, with their ids. Damaged snapshot objects and stray files in
    /// `snapshots/` are skipped and reported by [`Repository::skipped_objects`].
    pub async fn snapshots(&self) -> Result<Vec<(String, Snapshot)>> {
        self.refuse_if_write_only("reading snapshots")?;
        let mut all: Vec<(String, Snapshot)> = self
            .load_objects::<Snapshot>("snapshots")
            .await?
            .into_iter()
            .map(|(name, snap)| (name.trim_start_matches("snapshots/").to_string(), snap))
            .collect();
        all.sort_by(|a, b| a.1.time_ns.cmp(&b.1.time_ns).then(a.0.cmp(&b.0)));
        Ok(all)
    }

    /// Finds a snapshot by id, unique id prefix, or `latest`.
    pub async fn find_snapshot(&self, wanted: &str) -> Result<(String, Snapshot)> {
        let all = self.snapshots().await?;
        if wanted == "latest" {
            return all.into_iter().last().ok_or_else(|| Error::NotFound {
                what: "any snapshot (the repository is empty)".into(),
            });
        }
        let mut matching: Vec<_> = all
            .into_iter()
            .filter(|(id, _)| id.starts_with(wanted))
            .collect();
        match matching.len() {
            1 => Ok(matching.remove(0)),
            0 => Err(Error::NotFound {
                what: format!("snapshot {wanted}"),
            }),
            n => Err(Error::Config(format!(
                "snapshot prefix {wanted} is ambiguous ({n} match)"
            ))),
        }
    }

    /// Total size of all pack objects (what the repository stores for data and trees).
    pub async fn packs_size(&self) -> Result<u64> {
        let metas: Vec<_> = self
            .store
            .list(Some(&ObjectPath::from("data")))
            .try_collect()
            .await
            .map_err(|e| Error::store("data/", e))?;
        Ok(metas.iter().map(|m| m.size).sum())
    }
}

fn insert_pack(index: &mut HashMap<ChunkId, BlobLocation>, pack: &IndexPack) {
    let pack_id: Arc<str> = Arc::from(pack.id.as_str());
    for e in &pack.entries {
        index.insert(
            e.id,
            BlobLocation {
                pack: pack_id.clone(),
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
                group: e.group,
            },
        );
    }
}

/// Records a skipped object (once) and logs it.
pub(crate) fn skip(skipped: &Mutex<BTreeMap<String, String>>, name: &str, reason: &str) {
    if let Ok(mut skipped) = skipped.lock()
        && !skipped.contains_key(name)
    {
        tracing::warn!("skipping repository object {name}: {reason}");
        skipped.insert(name.to_string(), reason.to_string());
    }
}

/// The master secret in key object `name` if `key` opens it.
pub(crate) async fn unwrap_key(
    store: &dyn ObjectStore,
    name: &str,
    key: &KeySource,
) -> Result<Option<Zeroizing<[u8; MASTER_LEN]>>> {
    let bytes = get_bytes(store, name).await?;
    let object = KeyObject::decode(name, &bytes)?;
    key.unwrap(&object, name)
}

/// A fresh master secret.
fn random_master() -> Result<Zeroizing<[u8; MASTER_LEN]>> {
    let mut master = Zeroizing::new([0u8; MASTER_LEN]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), master.as_mut())
        .map_err(|_| Error::Config("the system random generator failed".into()))?;
    Ok(master)
}

/// Whether `config` is the only object at the location.
async fn only_object_is_config(store: &dyn ObjectStore, location: &str) -> Result<bool> {
    let names: Vec<_> = store
        .list(None)
        .take(2)
        .try_collect()
        .await
        .map_err(|e| Error::store(location, e))?;
    Ok(names.len() == 1 && names[0].location.as_ref() == CONFIG)
}

/// The key objects at a location with no config (an init killed before writing its config
/// leaves them); any other entry there is [`Error::NotEmpty`].
async fn leftover_keys(store: &dyn ObjectStore, location: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut listing = store.list(None);
    while let Some(meta) = listing
        .try_next()
        .await
        .map_err(|e| Error::store(location, e))?
    {
        let name = meta.location.to_string();
        if !is_object_name("keys", &name) {
            return Err(Error::NotEmpty {
                location: location.to_string(),
                found: name,
            });
        }
        keys.push(name);
    }
    keys.sort();
    Ok(keys)
}

pub(crate) fn poisoned<T>(_: T) -> Error {
    Error::Worker("a worker panicked while holding the index lock".into())
}

pub(crate) async fn list_names(store: &dyn ObjectStore, dir: &str) -> Result<Vec<String>> {
    let metas: Vec<_> = store
        .list(Some(&ObjectPath::from(dir)))
        .try_collect()
        .await
        .map_err(|e| Error::store(format!("{dir}/"), e))?;
    let mut names: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
    names.sort();
    Ok(names)
}

pub(crate) async fn get_bytes(store: &dyn ObjectStore, name: &str) -> Result<bytes::Bytes> {
    let result = get_object(store, name).await?;
    result.bytes().await.map_err(|e| Error::store(name, e))
}

pub(crate) async fn get_object(
    store: &dyn ObjectStore,
    name: &str,
) -> Result<object_store::GetResult> {
    let path = ObjectPath::from(name);
    store.get(&path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => Error::NotFound {
            what: format!("object {name}"),
        },
        e => Error::store(name, e),
    })
}

/// Reads a whole object into `buf` (cleared first), so a caller can keep large objects in
/// pooled buffers: straight from the file for local stores, chunk by chunk otherwise. Run it
/// from a blocking thread (local files are read synchronously).
pub(crate) async fn get_into(store: &dyn ObjectStore, name: &str, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    match get_object(store, name).await?.payload {
        object_store::GetResultPayload::File(mut file, _) => {
            use std::io::Read;
            file.read_to_end(buf)
                .map_err(|e| Error::io(std::path::Path::new(name), e))?;
        }
        object_store::GetResultPayload::Stream(mut stream) => {
            while let Some(chunk) = stream.try_next().await.map_err(|e| Error::store(name, e))? {
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(())
}
