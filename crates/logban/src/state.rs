//! Persistent state in an embedded database (redb): bans with their end times and whether a
//! sink has applied them, how often each target was banned (for incremental bans), and the
//! positions sources have reached in their logs (file offsets, journal cursors).
//!
//! redb was chosen because it is pure Rust, crash-safe (copy-on-write B-trees, every commit
//! durable), needs no server, and its single file is easy to back up.
//!
//! ```
//! # fn main() -> logban::Result<()> {
//! let dir = tempfile::tempdir().expect("tempdir");
//! let state = logban::StateStore::open(dir.path().join("logban.redb"))?;
//! state.set_position("file:/var/log/auth.log", b"inode=12 offset=4096")?;
//! assert_eq!(state.position("file:/var/log/auth.log")?.as_deref(), Some(&b"inode=12 offset=4096"[..]));
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use redb::{Database, ReadableTable, TableDefinition};

use crate::jail::Ban;
use crate::{Error, Result};

const BANS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("bans");
const BAN_COUNTS: TableDefinition<'_, &str, u32> = TableDefinition::new("ban_counts");
const POSITIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("positions");
/// When each counted target's last ban ends (Unix seconds, `i64::MAX` for permanent), for
/// pruning old history; databases written before it have counts without an end.
const BAN_ENDS: TableDefinition<'_, &str, i64> = TableDefinition::new("ban_ends");

/// Any redb error, boxed (redb's error type is large, and not part of the API); `?` converts
/// into it.
struct DbError(Box<dyn std::error::Error + Send + Sync>);

impl<E: Into<redb::Error>> From<E> for DbError {
    fn from(e: E) -> Self {
        DbError(Box::new(e.into()))
    }
}

/// A saved ban and whether a sink confirmed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredBan {
    /// The ban.
    pub ban: Ban,
    /// True once a sink applied it; false while it waits for a retry.
    pub applied: bool,
}

/// One change to save with [`StateStore::record`].
#[derive(Debug, Clone)]
pub(crate) enum Record {
    /// A ban (new or updated) and its ban count.
    Save(StoredBan),
    /// A ban lifted (its count stays, for incremental bans).
    Remove(String, IpNet),
}

/// The state database; cheap to clone (clones share one open database).
#[derive(Debug, Clone)]
pub struct StateStore {
    db: Arc<Database>,
    path: PathBuf,
}

fn key(jail: &str, target: &IpNet) -> String {
    format!("{jail} {target}")
}

impl StateStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let err = |source: redb::Error| Error::State {
            path: path.clone(),
            source: Box::new(source),
        };
        let db = Database::create(&path).map_err(|e| err(e.into()))?;
        // Create the tables so that readers never meet a missing one.
        let tx = db.begin_write().map_err(|e| err(e.into()))?;
        tx.open_table(BANS).map_err(|e| err(e.into()))?;
        tx.open_table(BAN_COUNTS).map_err(|e| err(e.into()))?;
        tx.open_table(POSITIONS).map_err(|e| err(e.into()))?;
        tx.open_table(BAN_ENDS).map_err(|e| err(e.into()))?;
        tx.commit().map_err(|e| err(e.into()))?;
        Ok(StateStore {
            db: Arc::new(db),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, source: impl Into<redb::Error>) -> Error {
        Error::State {
            path: self.path.clone(),
            source: Box::new(source.into()),
        }
    }

    fn write<T>(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<T, DbError>) -> Result<T> {
        let tx = self.db.begin_write().map_err(|e| self.error(e))?;
        let value = f(&tx).map_err(|DbError(e)| Error::State {
            path: self.path.clone(),
            source: e,
        })?;
        tx.commit().map_err(|e| self.error(e))?;
        Ok(value)
    }

    /// Saves (or updates) a ban, and its target's ban count.
    pub fn save_ban(&self, stored: &StoredBan) -> Result<()> {
        self.record(&[Record::Save(stored.clone())])
    }

    /// Saves a batch of changes in order, in one transaction (one commit, one fsync).
    pub(crate) fn record(&self, records: &[Record]) -> Result<()> {
        let mut encoded = Vec::with_capacity(records.len());
        for record in records {
            encoded.push(match record {
                Record::Save(stored) => {
                    let value = serde_json::to_vec(stored).map_err(|e| Error::Corrupt {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    })?;
                    (
                        key(&stored.ban.jail, &stored.ban.target),
                        Some((stored, value)),
                    )
                }
                Record::Remove(jail, target) => (key(jail, target), None),
            });
        }
        self.write(|tx| {
            let mut bans = tx.open_table(BANS)?;
            let mut counts = tx.open_table(BAN_COUNTS)?;
            let mut ends = tx.open_table(BAN_ENDS)?;
            for (k, save) in &encoded {
                match save {
                    Some((stored, value)) => {
                        bans.insert(k.as_str(), value.as_slice())?;
                        counts.insert(k.as_str(), stored.ban.count)?;
                        ends.insert(k.as_str(), stored.ban.until.unwrap_or(i64::MAX))?;
                    }
                    None => {
                        bans.remove(k.as_str())?;
                    }
                }
            }
            Ok(())
        })
    }

    /// Saves sources' positions (`(key, value)` pairs, see [`position`](Self::position)) in
    /// one transaction (durable when this returns).
    pub fn set_positions(&self, positions: &[(String, Vec<u8>)]) -> Result<()> {
        self.write(|tx| {
            let mut table = tx.open_table(POSITIONS)?;
            for (key, value) in positions {
                table.insert(key.as_str(), value.as_slice())?;
            }
            Ok(())
        })
    }

    /// Forgets a ban (its ban count stays, for incremental bans).
    pub fn remove_ban(&self, jail: &str, target: &IpNet) -> Result<()> {
        let k = key(jail, target);
        self.write(|tx| {
            tx.open_table(BANS)?.remove(k.as_str())?;
            Ok(())
        })
    }

    /// All saved bans.
    pub fn bans(&self) -> Result<Vec<StoredBan>> {
        let tx = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = tx.open_table(BANS).map_err(|e| self.error(e))?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(|e| self.error(e))? {
            let (k, v) = entry.map_err(|e| self.error(e))?;
            let stored: StoredBan =
                serde_json::from_slice(v.value()).map_err(|e| Error::Corrupt {
                    path: self.path.clone(),
                    reason: format!("ban `{}`: {e}", k.value()),
                })?;
            out.push(stored);
        }
        Ok(out)
    }

    /// How often each target of `jail` was banned, and when its last ban ends (`None` for a
    /// count saved before the database kept ends).
    pub fn ban_counts(&self, jail: &str) -> Result<Vec<(IpNet, u32, Option<i64>)>> {
        let tx = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = tx.open_table(BAN_COUNTS).map_err(|e| self.error(e))?;
        let ends = tx.open_table(BAN_ENDS).map_err(|e| self.error(e))?;
        let prefix = format!("{jail} ");
        let mut out = Vec::new();
        for entry in table.range(prefix.as_str()..).map_err(|e| self.error(e))? {
            let (k, v) = entry.map_err(|e| self.error(e))?;
            let Some(target) = k.value().strip_prefix(&prefix) else {
                break;
            };
            let end = ends.get(k.value()).map_err(|e| self.error(e))?;
            if let Ok(target) = target.parse::<IpNet>() {
                out.push((target, v.value(), end.map(|e| e.value())));
            }
        }
        Ok(out)
    }

    /// Removes the ban counts of `jail` whose last ban ended before `cutoff` (Unix seconds);
    /// a count without a known end is given `now` as its end, so it goes one history later.
    /// Returns how many were removed. One write transaction (blocking: run it off an async
    /// runtime).
    pub fn prune_ban_counts(&self, jail: &str, cutoff: i64, now: i64) -> Result<usize> {
        let prefix = format!("{jail} ");
        self.write(|tx| {
            let mut counts = tx.open_table(BAN_COUNTS)?;
            let mut ends = tx.open_table(BAN_ENDS)?;
            let mut old = Vec::new();
            let mut unknown = Vec::new();
            for entry in counts.range(prefix.as_str()..)? {
                let (k, _) = entry?;
                let key = k.value();
                if !key.starts_with(&prefix) {
                    break;
                }
                match ends.get(key)?.map(|e| e.value()) {
                    Some(end) if end < cutoff => old.push(key.to_owned()),
                    Some(_) => {}
                    None => unknown.push(key.to_owned()),
                }
            }
            for key in &old {
                counts.remove(key.as_str())?;
                ends.remove(key.as_str())?;
            }
            for key in &unknown {
                ends.insert(key.as_str(), now)?;
            }
            Ok(old.len())
        })
    }

    /// The position saved under `key` (a source's own encoding).
    pub fn position(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let tx = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = tx.open_table(POSITIONS).map_err(|e| self.error(e))?;
        let value = table.get(key).map_err(|e| self.error(e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Saves a source's position under `key` (durable when this returns).
    pub fn set_position(&self, key: &str, value: &[u8]) -> Result<()> {
        self.set_positions(&[(key.to_owned(), value.to_vec())])
    }

    /// Forgets the position under `key`.
    pub fn remove_position(&self, key: &str) -> Result<()> {
        self.write(|tx| {
            tx.open_table(POSITIONS)?.remove(key)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(jail: &str, target: &str, count: u32) -> StoredBan {
        StoredBan {
            ban: Ban {
                jail: jail.into(),
                target: target.parse().expect("net"),
                start: 100,
                until: Some(200),
                count,
            },
            applied: true,
        }
    }

    #[test]
    fn bans_counts_and_positions_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        {
            let state = StateStore::open(&path).expect("open");
            state
                .save_ban(&ban("sshd", "192.0.2.1/32", 1))
                .expect("save");
            state
                .save_ban(&ban("sshd", "2001:db8::/64", 3))
                .expect("save");
            state
                .save_ban(&ban("sshd-x", "192.0.2.9/32", 2))
                .expect("save");
            state
                .remove_ban("sshd", &"192.0.2.1/32".parse().expect("net"))
                .expect("remove");
            state
                .set_position("file:/var/log/a", b"42")
                .expect("position");
        }
        let state = StateStore::open(&path).expect("reopen");
        let mut bans = state.bans().expect("bans");
        bans.sort_by_key(|b| b.ban.count);
        assert_eq!(
            bans,
            vec![
                ban("sshd-x", "192.0.2.9/32", 2),
                ban("sshd", "2001:db8::/64", 3)
            ]
        );
        let mut counts = state.ban_counts("sshd").expect("counts");
        counts.sort();
        assert_eq!(
            counts,
            vec![
                ("192.0.2.1/32".parse().expect("net"), 1, Some(200)),
                ("2001:db8::/64".parse().expect("net"), 3, Some(200))
            ]
        );
        assert_eq!(
            state.position("file:/var/log/a").expect("get"),
            Some(b"42".to_vec())
        );
        assert_eq!(state.position("nope").expect("get"), None);
        state.remove_position("file:/var/log/a").expect("remove");
        assert_eq!(state.position("file:/var/log/a").expect("get"), None);
    }

    /// Ban history older than the cutoff goes; newer history, other jails' and permanent bans'
    /// stay; a count from before ends were kept is given one more history.
    #[test]
    fn ban_counts_are_pruned_by_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateStore::open(dir.path().join("state.redb")).expect("open");
        let mut permanent = ban("sshd", "192.0.2.3/32", 4);
        permanent.ban.until = None;
        let mut recent = ban("sshd", "192.0.2.2/32", 2);
        recent.ban.until = Some(5_000);
        for b in [
            ban("sshd", "192.0.2.1/32", 1),
            recent,
            permanent,
            ban("web", "192.0.2.1/32", 1),
        ] {
            state.save_ban(&b).expect("save");
        }
        let legacy = "sshd 192.0.2.4/32";
        state
            .write(|tx| {
                tx.open_table(BAN_COUNTS)?.insert(legacy, 7)?;
                Ok(())
            })
            .expect("legacy count");
        assert_eq!(
            state.prune_ban_counts("sshd", 1_000, 9_000).expect("prune"),
            1
        );
        let mut left: Vec<String> = state
            .ban_counts("sshd")
            .expect("counts")
            .iter()
            .map(|(t, c, end)| format!("{t} {c} {end:?}"))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "192.0.2.2/32 2 Some(5000)",
                "192.0.2.3/32 4 Some(9223372036854775807)",
                "192.0.2.4/32 7 Some(9000)"
            ]
        );
        assert_eq!(state.ban_counts("web").expect("web").len(), 1);
        assert_eq!(
            state
                .prune_ban_counts("sshd", 9_001, 10_000)
                .expect("prune"),
            2
        );
    }

    #[test]
    fn garbage_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        std::fs::write(&path, vec![0x5a; 8192]).expect("write");
        assert!(matches!(StateStore::open(&path), Err(Error::State { .. })));
    }
}
