//! Write-only repositories: a host with only the owner's public key backs up and deduplicates,
//! reads nothing back; the owner's identity restores and checks. The "decrypts nothing" test
//! derives the host's keys itself from the host key file (as FORMAT.md specifies them) and
//! tries every one on every object and frame, independently of the crate's own open paths.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::check::{CheckOptions, check};
use backup_core::conformance::small_options;
use backup_core::write_only::HostKey;
use backup_core::{BackupOptions, Error, InitOptions, KeySource, NoProgress, Repository};
use common::{assert_same, check_all, keep_copy, local, packs, restore_into, write_tree};
use crypto_at_rest::age::X25519Identity;
use crypto_at_rest::{KeyId, Keyring, SecretKey};

/// Bytes in every file of the tree, so any plaintext holding file content shows it.
const MARKER: &[u8] = b"WRITE-ONLY-CONTENT-MARKER";

struct Setup {
    repo_dir: PathBuf,
    host_key_file: PathBuf,
    owner: X25519Identity,
}

fn setup(work: &Path) -> Setup {
    Setup {
        repo_dir: work.join("repo"),
        host_key_file: work.join("host-state/host.key"),
        owner: X25519Identity::generate().unwrap(),
    }
}

/// `init --write-only` as the host runs it: a host key made and kept on the host, the
/// owner's public key, nothing else.
async fn provision(s: &Setup) -> Arc<Repository> {
    std::fs::create_dir_all(s.host_key_file.parent().unwrap()).unwrap();
    let host_key = HostKey::generate().unwrap();
    host_key.save_new(&s.host_key_file).unwrap();
    Arc::new(
        Repository::init_write_only(
            local(&s.repo_dir),
            "repo",
            &s.owner.to_public(),
            &host_key,
            small_options(),
        )
        .await
        .unwrap(),
    )
}

async fn open_host(s: &Setup) -> Arc<Repository> {
    let key = KeySource::host_key_file(&s.host_key_file).unwrap();
    Arc::new(
        Repository::open(local(&s.repo_dir), "repo", &key)
            .await
            .unwrap(),
    )
}

async fn open_owner(s: &Setup) -> Arc<Repository> {
    let key = KeySource::OwnerIdentity(s.owner.clone());
    Arc::new(
        Repository::open(local(&s.repo_dir), "repo", &key)
            .await
            .unwrap(),
    )
}

fn init_options_from(source: &Repository) -> backup_core::Result<InitOptions> {
    InitOptions::new().with_params_from(source).build()
}

fn write_marked_tree(src: &Path, round: u64) {
    write_tree(src, round);
    let mut marked = MARKER.to_vec();
    marked.extend_from_slice(format!(" round {round}").as_bytes());
    std::fs::write(src.join("marked.txt"), &marked).unwrap();
}

async fn backup(repo: &Arc<Repository>, src: &Path) -> (String, backup_core::format::Summary) {
    let options = BackupOptions::builder([src])
        .with_auto_parent(true)
        .build()
        .unwrap();
    let (id, snapshot) = backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
        .await
        .unwrap();
    (id, snapshot.summary)
}

fn assert_write_only<T: std::fmt::Debug>(result: backup_core::Result<T>, what: &str) {
    match result {
        Err(e @ Error::WriteOnly { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("write-only") && text.contains("owner's identity"),
                "{what}: {text}"
            );
        }
        other => panic!("{what}: expected Error::WriteOnly, got {other:?}"),
    }
}

#[tokio::test]
async fn host_backs_up_and_dedups_and_the_owner_restores_and_checks() {
    let work = tempfile::tempdir().unwrap();
    let s = setup(work.path());
    let src = work.path().join("src");
    write_marked_tree(&src, 0);
    let host = provision(&s).await;
    let (first, summary) = backup(&host, &src).await;
    assert!(summary.bytes_new > 0);
    let packs_after_first = packs(&s.repo_dir);

    // A second run (a new process: reopened from the host key file) with nothing changed
    // re-reads the files but uploads no data: no new pack, no new chunk.
    let host = open_host(&s).await;
    let (second, summary) = backup(&host, &src).await;
    assert_eq!(summary.chunks_new, 0, "{summary:?}");
    assert_eq!(summary.bytes_new, 0, "{summary:?}");
    assert_eq!(packs(&s.repo_dir), packs_after_first);
    let copy0 = work.path().join("state0");
    std::fs::create_dir(&copy0).unwrap();
    keep_copy(&src, &copy0);

    // A change uploads only what changed (the big file is kept).
    std::fs::write(src.join("new.txt"), b"a new file").unwrap();
    std::fs::write(src.join("b.txt"), b"changed").unwrap();
    let (third, summary) = backup(&host, &src).await;
    assert!(summary.chunks_new > 0);
    assert!(summary.bytes_new < summary.bytes / 10, "{summary:?}");
    let copy1 = work.path().join("state1");
    std::fs::create_dir(&copy1).unwrap();
    keep_copy(&src, &copy1);

    // The host cannot read back what it wrote.
    assert_write_only(host.snapshots().await, "snapshots");
    assert_write_only(host.find_snapshot("latest").await, "find_snapshot");
    let restored = restore_into(&host, &first, work.path(), "src").await;
    assert_write_only(restored, "restore");
    let checked = check(host.clone(), &CheckOptions::builder().build().unwrap()).await;
    assert_write_only(checked, "check");

    // Elsewhere, the owner's identity restores every snapshot byte-identical and checks data.
    let owner = open_owner(&s).await;
    let ids: Vec<String> = owner
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids.len(), 3);
    for (id, expected) in [(&first, &copy0), (&second, &copy0), (&third, &copy1)] {
        let restored = restore_into(&owner, id, work.path(), "src").await.unwrap();
        assert_same(&expected.join("src"), &restored);
    }
    let report = check_all(owner.clone()).await;
    assert!(report.is_ok(), "{report:?}");
}

#[tokio::test]
async fn write_only_and_append_only_together() {
    let work = tempfile::tempdir().unwrap();
    let s = setup(work.path());
    let src = work.path().join("src");
    write_marked_tree(&src, 0);
    drop(provision(&s).await);
    let key = KeySource::host_key_file(&s.host_key_file).unwrap();
    let host = Arc::new(
        Repository::open_append_only(local(&s.repo_dir), "repo", &key)
            .await
            .unwrap(),
    );
    assert!(host.is_append_only() && host.is_write_only());
    let (id, _) = backup(&host, &src).await;
    write_marked_tree(&src, 1);
    backup(&host, &src).await;
    // Reading is refused for being write-only, deleting for being append-only.
    assert_write_only(host.snapshots().await, "snapshots");
    let owner = open_owner(&s).await;
    assert_eq!(owner.snapshots().await.unwrap().len(), 2);
    let restored = restore_into(&owner, &id, work.path(), "src").await.unwrap();
    assert!(restored.join("marked.txt").exists());
}

/// The secrets a compromised host holds, derived from its host key file as FORMAT.md says.
fn host_secrets(host_key_file: &Path) -> Vec<(&'static str, [u8; 32])> {
    let text = std::fs::read_to_string(host_key_file).unwrap();
    let hex_secret = text
        .lines()
        .find_map(|l| l.strip_prefix("secret "))
        .expect("secret line");
    let mut h = [0u8; 32];
    hex::decode_to_slice(hex_secret, &mut h).unwrap();
    let derive = |context: &str| blake3::derive_key(context, &h);
    vec![
        ("host secret", h),
        (
            "key-encryption key",
            derive("hostguard backup-core data key-encryption key"),
        ),
        ("chunk id key", derive("hostguard backup-core chunk id key")),
        ("gear key", derive("hostguard backup-core chunker gear key")),
        ("group id key", derive("hostguard backup-core group id key")),
        (
            "object key",
            derive("hostguard backup-core write-only object key"),
        ),
    ]
}

fn all_objects(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Opens `sealed` as a crypto-at-rest envelope under `key` (keyring id 1, as FORMAT.md).
fn open_envelope(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    Keyring::new(KeyId(1), SecretKey::from_bytes(*key))
        .open(aad, sealed)
        .ok()
}

/// Opens `sealed` as an owner-sealed object whose data key would be `key` itself.
fn open_owner_format_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> bool {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    if sealed.len() < 92 {
        return false;
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
    let mut body = sealed[76..].to_vec();
    key.open_in_place(
        Nonce::assume_unique_for_key([0; 12]),
        Aad::from(aad),
        &mut body,
    )
    .is_ok()
}

/// Plaintext without its trailing compression flag, decompressed if the flag says zstd.
fn decompressed(plain: &[u8]) -> Vec<u8> {
    match plain.split_last() {
        Some((1, body)) => zstd::decode_all(body).unwrap(),
        Some((_, body)) => body.to_vec(),
        None => Vec::new(),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[derive(serde::Deserialize)]
struct IndexFile {
    packs: Vec<IndexPack>,
}
#[derive(serde::Deserialize)]
struct IndexPack {
    id: String,
    entries: Vec<PackEntry>,
}
#[derive(serde::Deserialize)]
struct PackEntry {
    #[serde(with = "serde_bytes")]
    id: Vec<u8>,
    offset: u32,
    length: u32,
    group: Option<GroupRef>,
}
#[derive(serde::Deserialize)]
struct GroupRef {
    #[serde(with = "serde_bytes")]
    id: Vec<u8>,
}

#[tokio::test]
async fn the_host_decrypts_nothing_it_did_not_just_write() {
    let work = tempfile::tempdir().unwrap();
    let s = setup(work.path());
    let src = work.path().join("src");
    write_marked_tree(&src, 0);
    let host = provision(&s).await;
    backup(&host, &src).await;
    write_marked_tree(&src, 1);
    let cache = s.host_key_file.with_extension("cache");
    backup(&open_host_cached(&s, &cache).await, &src).await;

    // Everything the host holds: the files under its state directory (the host key file and
    // its parent cache) and every key derived from them.
    let state: Vec<(String, Vec<u8>)> = all_objects(s.host_key_file.parent().unwrap());
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["host.cache", "host.key"]);
    let secrets = host_secrets(&s.host_key_file);
    // The cache opens for the host (it is its own) and holds names and chunk ids, no content.
    let kek = secrets[1].1;
    let cached = open_envelope(&kek, b"host-cache", &state[0].1).expect("the host's cache");
    assert!(!contains(&decompressed(&cached), MARKER));
    assert!(contains(&decompressed(&cached), b"marked.txt"));

    let objects = all_objects(&s.repo_dir);
    let mut frames = Vec::new();
    let mut opened_names = Vec::new();
    for (name, bytes) in &objects {
        for (what, key) in &secrets {
            for aad in [name.as_bytes(), b"config".as_slice()] {
                if let Some(plain) = open_envelope(key, aad, bytes) {
                    assert_eq!(
                        *what, "key-encryption key",
                        "{name} opened under the {what}"
                    );
                    let plain = if name == "config" {
                        plain
                    } else {
                        decompressed(&plain)
                    };
                    assert!(!contains(&plain, MARKER), "{name} holds file content");
                    opened_names.push(name.clone());
                    if name.starts_with("index/") {
                        let index: IndexFile = ciborium::from_reader(&plain[..]).unwrap();
                        for pack in index.packs {
                            for entry in pack.entries {
                                let aad_id = entry.group.map_or(entry.id, |g| g.id);
                                frames.push((pack.id.clone(), entry.offset, entry.length, aad_id));
                            }
                        }
                    }
                }
            }
            if name.starts_with("data/") {
                // The pack header, found through the pack's trailer.
                let len = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap()) as usize;
                let header = &bytes[bytes.len() - 4 - len..bytes.len() - 4];
                let aad = format!("{name}#header");
                assert!(open_envelope(key, aad.as_bytes(), header).is_none());
                assert!(!open_owner_format_with(key, aad.as_bytes(), header));
                assert_eq!(header[0], b'W', "{name}'s header is sealed to the owner");
            }
            if name.starts_with("snapshots/") {
                assert!(!open_owner_format_with(key, name.as_bytes(), bytes));
                assert_eq!(bytes[0], b'W', "{name} is sealed to the owner");
            }
        }
    }
    // What the host can open: its config, its index (ids and places), nothing else.
    opened_names.sort();
    opened_names.dedup();
    assert!(opened_names.contains(&"config".to_string()));
    assert!(
        opened_names
            .iter()
            .all(|n| n == "config" || n.starts_with("index/") || n.starts_with("locks/")),
        "{opened_names:?}"
    );
    // Every frame (file data and trees of both runs), under every secret, in both formats.
    assert!(frames.len() > 5, "{} frames", frames.len());
    for (pack, offset, length, frame_id) in &frames {
        let path = format!("data/{}/{pack}", &pack[..2]);
        let bytes = &objects.iter().find(|(n, _)| *n == path).unwrap().1;
        let frame = &bytes[*offset as usize..(*offset + *length) as usize];
        assert_eq!(frame[0], b'W', "a frame of {path} is sealed to the owner");
        let mut aad = b"blob:".to_vec();
        aad.extend_from_slice(frame_id);
        for (what, key) in &secrets {
            assert!(
                open_envelope(key, &aad, frame).is_none(),
                "{what} opened a frame"
            );
            assert!(
                !open_owner_format_with(key, &aad, frame),
                "{what} opened a frame"
            );
        }
    }
    // Sanity: the same frames open for the owner, so the checks above could fail.
    let owner = open_owner(&s).await;
    let report = check_all(owner).await;
    assert!(report.is_ok(), "{report:?}");
}

#[tokio::test]
async fn hostile_and_wrong_keys_give_clear_errors() {
    let work = tempfile::tempdir().unwrap();
    let s = setup(work.path());
    let src = work.path().join("src");
    write_marked_tree(&src, 0);
    let host = provision(&s).await;
    let (id, _) = backup(&host, &src).await;

    // Another owner's identity.
    let stranger = KeySource::OwnerIdentity(X25519Identity::generate().unwrap());
    let err = Repository::open(local(&s.repo_dir), "repo", &stranger)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongKey), "{err:?}");
    // Another host's key.
    let other = HostKey::generate().unwrap();
    let err = Repository::open(local(&s.repo_dir), "repo", &KeySource::Host(other))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongKey), "{err:?}");
    // A password on a write-only repository says what is needed.
    let err = Repository::open(local(&s.repo_dir), "repo", &KeySource::passphrase("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WriteOnly { .. }), "{err:?}");
    // A garbage host key file.
    let bad = work.path().join("bad.key");
    std::fs::write(&bad, "hostguard-backup-host-key v1\nsecret 12zz\n").unwrap();
    let err = KeySource::host_key_file(&bad).unwrap_err();
    assert!(err.to_string().contains("not a host key file"), "{err}");

    // What a write-only repository does not support says so.
    let owner = open_owner(&s).await;
    let err = owner
        .add_key(&KeySource::passphrase("pw"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let mirror = Arc::new(
        Repository::init(
            local(&work.path().join("mirror")),
            "mirror",
            &KeySource::passphrase("pw"),
            small_options(),
        )
        .await
        .unwrap(),
    );
    let err = init_options_from(&owner).unwrap_err();
    assert!(err.to_string().contains("write-only"), "{err}");
    let options = backup_core::copy::CopyOptions::builder().build().unwrap();
    let err = backup_core::copy::copy(owner.clone(), mirror, &options)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("write-only"), "{err}");

    // A snapshot whose wrapped key is damaged: skipped and named, never a panic.
    let snap_path = s.repo_dir.join("snapshots").join(&id);
    let original = std::fs::read(&snap_path).unwrap();
    let mut damaged = original.clone();
    damaged[50] ^= 0x01; // inside the wrapped file key
    std::fs::write(&snap_path, &damaged).unwrap();
    let owner = open_owner(&s).await;
    assert!(owner.snapshots().await.unwrap().is_empty());
    assert!(
        owner
            .skipped_objects()
            .iter()
            .any(|o| o.object == format!("snapshots/{id}")),
        "{:?}",
        owner.skipped_objects()
    );
    std::fs::write(&snap_path, &original).unwrap();

    // A data frame whose wrapped key is damaged: check --read-data finds it, restore fails
    // with an error, nothing panics; repaired, both pass again.
    let (pack, _) = packs(&s.repo_dir)
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    let original_pack = std::fs::read(&pack).unwrap();
    assert_eq!(original_pack[0], b'W');
    common::flip(&pack, 50);
    let owner = open_owner(&s).await;
    let report = check_all(owner.clone()).await;
    assert!(!report.is_ok(), "{report:?}");
    // Restore fails, or (restoring what it can) leaves the damaged file out or different.
    if let Ok(restored) = restore_into(&owner, &id, work.path(), "src").await {
        let diffs = backup_core::compare_trees(&src, &restored);
        assert!(
            diffs.map_or(true, |d| !d.is_empty()),
            "damage restored as sound"
        );
    }
    std::fs::write(&pack, &original_pack).unwrap();
    assert!(check_all(open_owner(&s).await).await.is_ok());

    // A truncated hosts/ object, and then none at all.
    let hosts_dir = s.repo_dir.join("hosts");
    let host_object = std::fs::read_dir(&hosts_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&host_object).unwrap();
    std::fs::write(&host_object, &bytes[..bytes.len() / 2]).unwrap();
    let key = KeySource::OwnerIdentity(s.owner.clone());
    let err = Repository::open(local(&s.repo_dir), "repo", &key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::WrongKey | Error::Corrupt { .. }),
        "{err:?}"
    );
    std::fs::remove_file(&host_object).unwrap();
    let err = Repository::open(local(&s.repo_dir), "repo", &key)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no hosts/ object"), "{err}");

    // The host key file is never replaced.
    let err = HostKey::generate()
        .unwrap()
        .save_new(&s.host_key_file)
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    // And init refuses an existing repository.
    let err = Repository::init_write_only(
        local(&s.repo_dir),
        "repo",
        &s.owner.to_public(),
        &HostKey::generate().unwrap(),
        small_options(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::RepositoryExists { .. }), "{err:?}");
}

async fn open_host_cached(s: &Setup, cache: &Path) -> Arc<Repository> {
    let key = KeySource::host_key_file(&s.host_key_file).unwrap();
    let repo = Repository::open(local(&s.repo_dir), "repo", &key)
        .await
        .unwrap();
    Arc::new(repo.with_host_cache(cache).unwrap())
}

#[tokio::test]
async fn the_host_parent_cache_skips_unchanged_files_and_survives_an_owner_prune() {
    let work = tempfile::tempdir().unwrap();
    let s = setup(work.path());
    let src = work.path().join("src");
    write_marked_tree(&src, 0);
    drop(provision(&s).await);
    let cache = s.host_key_file.with_extension("cache");

    let (_, first) = backup(&open_host_cached(&s, &cache).await, &src).await;
    assert_eq!(first.bytes_read, first.bytes);
    assert!(cache.exists());
    // A new run with the cache reads nothing unchanged, and stores nothing new.
    let (second_id, second) = backup(&open_host_cached(&s, &cache).await, &src).await;
    assert_eq!(second.files_unchanged, second.files, "{second:?}");
    assert_eq!(second.bytes_read, 0, "{second:?}");
    assert_eq!(second.chunks_new, 0, "{second:?}");
    // The snapshot made from the cache restores byte-identical for the owner.
    let owner = open_owner(&s).await;
    let restored = restore_into(&owner, &second_id, work.path(), "src")
        .await
        .unwrap();
    assert_same(&src, &restored);

    // The owner removes every snapshot and prunes: the cache names chunks no longer stored,
    // so the next run reads (and uploads) every file instead of trusting it.
    for entry in std::fs::read_dir(s.repo_dir.join("snapshots")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let options = backup_core::prune::PruneOptions::builder().build().unwrap();
    backup_core::prune::prune(open_owner(&s).await, &options)
        .await
        .unwrap();
    assert!(packs(&s.repo_dir).is_empty(), "prune removed every pack");
    let (third_id, third) = backup(&open_host_cached(&s, &cache).await, &src).await;
    assert_eq!(third.bytes_read, third.bytes, "{third:?}");
    assert!(third.bytes_new > 0);
    let owner = open_owner(&s).await;
    let restored = restore_into(&owner, &third_id, work.path(), "src")
        .await
        .unwrap();
    assert_same(&src, &restored);
    assert!(check_all(owner.clone()).await.is_ok());

    // A damaged cache only costs a re-read; a cache is refused for the owner's handle.
    let mut bytes = std::fs::read(&cache).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&cache, &bytes).unwrap();
    let (_, fourth) = backup(&open_host_cached(&s, &cache).await, &src).await;
    assert_eq!(fourth.bytes_read, fourth.bytes, "{fourth:?}");
    assert_eq!(fourth.chunks_new, 0, "{fourth:?}");
    let owner = Repository::open(
        local(&s.repo_dir),
        "repo",
        &KeySource::OwnerIdentity(s.owner.clone()),
    )
    .await
    .unwrap();
    assert!(matches!(
        owner.with_host_cache(&cache),
        Err(Error::Config(_))
    ));
}
