//! Opening and creating repositories; reading and writing their objects.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use futures::TryStreamExt;
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
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            pack_size: 8 * 1024 * 1024,
            compression_level: 1,
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

    /// Checks the options.
    pub fn build(self) -> Result<Self> {
        self.chunker.validate()?;
        if !(64 * 1024..=1 << 30).contains(&self.pack_size) {
            return Err(Error::Config(format!(
                "pack size {} outside 64 KiB..1 GiB",
                self.pack_size
            )));
        }
        if !(1..=19).contains(&self.compression_level) {
            return Err(Error::Config(format!(
                "zstd level {} outside 1..19",
                self.compression_level
            )));
        }
        Ok(self)
    }
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
    pub(crate) cipher: RepoCipher,
    id_key: Zeroizing<[u8; 32]>,
    group_key: Zeroizing<[u8; 32]>,
    pub(crate) chunker: Chunker,
}

impl Keys {
    fn derive(master: &[u8; MASTER_LEN], config: &Config) -> Self {
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
            cipher: RepoCipher::from_master(master),
            id_key,
            group_key,
            chunker: Chunker::new(config.chunker, &gear_key),
        }
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
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("location", &self.location)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn blob_aad(id: &ChunkId) -> Vec<u8> {
    let mut aad = b"blob:".to_vec();
    aad.extend_from_slice(&id.0);
    aad
}

impl Repository {
    /// Creates a repository; refuses (with [`Error::RepositoryExists`]) if one is already there.
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
        let mut master = Zeroizing::new([0u8; MASTER_LEN]);
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), master.as_mut())
            .map_err(|_| Error::Config("the system random generator failed".into()))?;
        let config = Config {
            version: FORMAT_VERSION,
            id: format::random_id(),
            chunker: options.chunker,
            pack_size: options.pack_size,
            compression_level: options.compression_level,
        };
        let keys = Arc::new(Keys::derive(&master, &config));
        // Claim the location first: the conditional put is the atomic "does a repository exist".
        let config_bytes = keys
            .cipher
            .seal(CONFIG.as_bytes(), &format::encode(&config))?;
        let path = ObjectPath::from(CONFIG);
        match store
            .put_opts(
                &path,
                config_bytes.into(),
                PutOptions::from(PutMode::Create),
            )
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(Error::RepositoryExists { location });
            }
            Err(e) => return Err(Error::store(CONFIG, e)),
        }
        let repo = Repository {
            store,
            location,
            config,
            keys,
            index: RwLock::new(HashMap::new()),
        };
        repo.add_key(&master, key).await?;
        Ok(repo)
    }

    async fn add_key(&self, master: &[u8; MASTER_LEN], key: &KeySource) -> Result<()> {
        let name = format!("keys/{}", format::random_id());
        let object = key.wrap(master, &name)?;
        self.put(&name, format::encode(&object), true).await
    }

    /// Opens the repository with a passphrase or key file.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        location: impl Into<String>,
        key: &KeySource,
    ) -> Result<Repository> {
        let location = location.into();
        let config_sealed = match store.get(&ObjectPath::from(CONFIG)).await {
            Ok(r) => r.bytes().await.map_err(|e| Error::store(CONFIG, e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::NoRepository { location });
            }
            Err(e) => return Err(Error::store(CONFIG, e)),
        };
        let key_names = list_names(store.as_ref(), "keys").await?;
        let mut master = None;
        for name in key_names {
            let bytes = get_bytes(store.as_ref(), &name).await?;
            let object: KeyObject = format::decode(&name, &bytes)?;
            if let Some(m) = key.unwrap(&object, &name)? {
                master = Some(m);
                break;
            }
        }
        let master = master.ok_or(Error::WrongKey)?;
        let probe = RepoCipher::from_master(&master);
        let config_plain = probe
            .open(CONFIG.as_bytes(), &config_sealed)
            .map_err(|_| Error::corrupt(CONFIG, "fails authentication under the repository key"))?;
        let config: Config = format::decode(CONFIG, &config_plain)?;
        if config.version != FORMAT_VERSION {
            return Err(Error::corrupt(
                CONFIG,
                format!("unsupported format version {}", config.version),
            ));
        }
        config.chunker.validate()?;
        let repo = Repository {
            store,
            location,
            keys: Arc::new(Keys::derive(&master, &config)),
            config,
            index: RwLock::new(HashMap::new()),
        };
        repo.load_index().await?;
        Ok(repo)
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

    async fn load_index(&self) -> Result<()> {
        let names = list_names(self.store.as_ref(), "index").await?;
        let loads = names.iter().map(|name| self.get_sealed::<IndexFile>(name));
        let files = futures::future::try_join_all(loads).await?;
        let mut index = self.index.write().map_err(poisoned)?;
        for file in files {
            for pack in file.packs {
                insert_pack(&mut index, &pack);
            }
        }
        Ok(())
    }

    pub(crate) fn add_to_index(&self, pack: &IndexPack) -> Result<()> {
        insert_pack(&mut *self.index.write().map_err(poisoned)?, pack);
        Ok(())
    }

    /// Whether a blob with this id is stored.
    pub(crate) fn has_blob(&self, id: &ChunkId) -> bool {
        self.index.read().is_ok_and(|i| i.contains_key(id))
    }

    pub(crate) fn locate(&self, id: &ChunkId) -> Result<BlobLocation> {
        self.index
            .read()
            .map_err(poisoned)?
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound {
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
    fn open_frame_with<'d>(
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
        let bytes = self.load_blob(id).await?;
        let tree: Tree = format::decode(&format!("tree {id}"), &bytes)?;
        Ok(tree)
    }

    /// All snapshots, oldest first, with their ids.
    pub async fn snapshots(&self) -> Result<Vec<(String, Snapshot)>> {
        let names = list_names(self.store.as_ref(), "snapshots").await?;
        let loads = names.iter().map(|name| async move {
            let snap: Snapshot = self.get_sealed(name).await?;
            let id = name.trim_start_matches("snapshots/").to_string();
            Ok::<_, Error>((id, snap))
        });
        let mut all = futures::future::try_join_all(loads).await?;
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

pub(crate) fn poisoned<T>(_: T) -> Error {
    Error::Worker("a worker panicked while holding the index lock".into())
}

async fn list_names(store: &dyn ObjectStore, dir: &str) -> Result<Vec<String>> {
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
