//! A logban [`BanSink`] that bans at Cloudflare's edge (feature `logban`): into one
//! account-level IP list (one list serves every server and zone) or into IP access rules.
//!
//! Cloudflare keeps no timeouts, so each item's comment (a rule's notes) records the jails
//! that ban it and until when: `hostguard conf_a@1767225600 sshd@never`. [`list`](BanSink::list)
//! leaves out expired entries and the next [`apply`](BanSink::apply) removes them; items
//! without the `hostguard` mark are never touched. A batch is read, changed in memory in order,
//! and written as at most one add and one remove operation (lists) or one call per changed
//! rule (access rules).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use ipnet::{IpNet, Ipv6Net};
use logban::{BanAction, BanSink};

use crate::Error;
use crate::access::{AccessFilter, AccessMode, AccessTarget, Scope};
use crate::client::Client;
use crate::lists::NewItem;

const MARK: &str = "hostguard";

/// Where the sink bans.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EdgeTarget {
    /// Items of the account's IP list `name` (created on `prepare`); reference it from a
    /// WAF custom rule (`ip.src in $name`) to block.
    IpList {
        /// The account id.
        account_id: String,
        /// The list's name.
        name: String,
    },
    /// IP access rules with mode `block`.
    AccessRules(Scope),
}

/// Builds a [`CloudflareSink`].
#[derive(Debug, Clone)]
pub struct CloudflareSinkBuilder {
    client: Client,
    target: EdgeTarget,
    widen_ipv6: bool,
    cache_age: std::time::Duration,
}

impl CloudflareSinkBuilder {
    /// How long the sink trusts its view of the list between listings (default 60 s). Other
    /// servers banning into the same list are seen at the next listing; `Duration::ZERO`
    /// lists before every batch (exact, but a listing of 10,000 items is 20 requests).
    pub fn with_cache_age(mut self, age: std::time::Duration) -> Self {
        self.cache_age = age;
        self
    }

    /// Bans IPv6 hosts as their /64 (Cloudflare lists and access rules take IPv6 prefixes no
    /// longer than /64, and one host usually owns the whole /64). Off by default.
    ///
    /// Known limit: the item records one ban per jail and /64, not per address. When one jail
    /// bans two addresses of the same /64, the later ban's expiry replaces the earlier one's, and
    /// unbanning (or the expiry of) either address lifts the /64 for that jail.
    pub fn with_ipv6_widened_to_64(mut self, widen: bool) -> Self {
        self.widen_ipv6 = widen;
        self
    }

    /// Checks the target and builds the sink.
    pub fn build(self) -> crate::Result<CloudflareSink> {
        if let EdgeTarget::IpList { account_id, name } = &self.target {
            let valid = !name.is_empty()
                && name.len() <= 50
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid || account_id.is_empty() {
                return Err(Error::InvalidConfig {
                    field: "ip list".into(),
                    reason: format!(
                        "list name `{name}` must be 1-50 characters of a-z, 0-9 and _, \
                         and the account id must be set"
                    ),
                });
            }
        }
        Ok(CloudflareSink {
            client: self.client,
            target: self.target,
            widen_ipv6: self.widen_ipv6,
            cache_age: self.cache_age,
            list_id: tokio::sync::Mutex::new(None),
            cache: tokio::sync::Mutex::new(None),
        })
    }
}

/// Bans at Cloudflare; see the [module docs](self).
#[derive(Debug)]
pub struct CloudflareSink {
    client: Client,
    target: EdgeTarget,
    widen_ipv6: bool,
    cache_age: std::time::Duration,
    list_id: tokio::sync::Mutex<Option<String>>,
    /// What Cloudflare holds as of the last listing plus this sink's writes since; also makes
    /// batches go one at a time (Cloudflare runs one list operation at a time anyway).
    cache: tokio::sync::Mutex<Option<View>>,
}

/// The cached view and when it was listed.
#[derive(Debug)]
struct View {
    listed: tokio::time::Instant,
    held: BTreeMap<IpNet, Held>,
}

/// Jail → expiry (unix seconds, `None` = never) of one banned target.
type Entries = BTreeMap<String, Option<u64>>;

/// One banned target as held at Cloudflare.
#[derive(Debug, Clone)]
struct Held {
    /// Cloudflare's id; `None` for items this sink added since the last listing.
    id: Option<String>,
    entries: Entries,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn encode(entries: &Entries) -> String {
    let mut text = MARK.to_owned();
    for (jail, until) in entries {
        match until {
            Some(t) => text.push_str(&format!(" {jail}@{t}")),
            None => text.push_str(&format!(" {jail}@never")),
        }
    }
    text
}

/// Parses a comment written by [`encode`]; `None` for anything else (not ours).
fn decode_entries(text: &str) -> Option<Entries> {
    let mut words = text.split(' ');
    if words.next()? != MARK {
        return None;
    }
    let mut entries = Entries::new();
    for word in words.filter(|w| !w.is_empty()) {
        let (jail, until) = word.rsplit_once('@')?;
        let until = match until {
            "never" => None,
            t => Some(t.parse().ok()?),
        };
        entries.insert(jail.to_owned(), until);
    }
    Some(entries)
}

fn live(entries: &Entries, now: u64) -> Entries {
    entries
        .iter()
        .filter(|(_, until)| until.is_none_or(|u| u > now))
        .map(|(j, u)| (j.clone(), *u))
        .collect()
}

fn sink_error(error: Error) -> logban::Error {
    logban::Error::Sink {
        sink: "cloudflare".into(),
        reason: error.to_string(),
    }
}

impl CloudflareSink {
    /// A builder banning with `client` into `target`.
    pub fn builder(client: Client, target: EdgeTarget) -> CloudflareSinkBuilder {
        CloudflareSinkBuilder {
            client,
            target,
            widen_ipv6: false,
            cache_age: std::time::Duration::from_secs(60),
        }
    }

    /// The target as banned at the edge (an IPv6 host widened to its /64 when configured).
    pub fn edge_net(&self, target: IpNet) -> IpNet {
        match target {
            IpNet::V6(net) if self.widen_ipv6 && net.prefix_len() > 64 => {
                Ipv6Net::new(net.addr(), 64).map_or(target, |n| IpNet::V6(n.trunc()))
            }
            other => other.trunc(),
        }
    }

    async fn list_id(&self) -> crate::Result<String> {
        let EdgeTarget::IpList { account_id, name } = &self.target else {
            return Err(Error::InvalidConfig {
                field: "target".into(),
                reason: "not an IP list".into(),
            });
        };
        let mut cached = self.list_id.lock().await;
        if let Some(id) = &*cached {
            return Ok(id.clone());
        }
        let list = self
            .client
            .ensure_ip_list(account_id, name, "Bans by hostguard logban")
            .await?;
        *cached = Some(list.id.clone());
        Ok(list.id)
    }

    /// Everything this sink holds at Cloudflare, expired entries included.
    async fn load(&self) -> crate::Result<BTreeMap<IpNet, Held>> {
        let mut held = BTreeMap::new();
        match &self.target {
            EdgeTarget::IpList { account_id, .. } => {
                let list_id = self.list_id().await?;
                for item in self.client.all_list_items(account_id, &list_id).await? {
                    let (Some(ip), Some(comment)) = (&item.ip, &item.comment) else {
                        continue;
                    };
                    let (Some(net), Some(entries)) = (parse_net(ip), decode_entries(comment))
                    else {
                        continue;
                    };
                    held.insert(
                        net,
                        Held {
                            id: Some(item.id),
                            entries,
                        },
                    );
                }
            }
            EdgeTarget::AccessRules(scope) => {
                let filter = AccessFilter::default().with_notes(MARK);
                for rule in self.client.list_access_rules(scope, &filter).await? {
                    let (Some(net), Some(entries)) = (
                        parse_net(&rule.configuration.value),
                        decode_entries(&rule.notes),
                    ) else {
                        continue;
                    };
                    held.insert(
                        net,
                        Held {
                            id: Some(rule.id),
                            entries,
                        },
                    );
                }
            }
        }
        Ok(held)
    }

    /// Applies `actions` from the cached view of what Cloudflare holds (listed once, then kept
    /// up to date by this sink's own writes); any failure drops the cache so the next batch
    /// starts from a fresh listing.
    async fn apply_inner(&self, actions: &[BanAction]) -> crate::Result<()> {
        let mut cache = self.cache.lock().await;
        let result = self.apply_cached(&mut cache, actions).await;
        if result.is_err() {
            *cache = None;
        }
        result
    }

    async fn apply_cached(
        &self,
        cache: &mut Option<View>,
        actions: &[BanAction],
    ) -> crate::Result<()> {
        let now = now_secs();
        let (mut listed, mut held) = match cache.take() {
            Some(view) if view.listed.elapsed() < self.cache_age => (view.listed, view.held),
            _ => (tokio::time::Instant::now(), self.load().await?),
        };
        let mut changes = self.changes(&held, actions, now);
        if changes.needs_unknown_ids(&held) {
            // Items this sink added since the last listing: their ids come from a listing.
            listed = tokio::time::Instant::now();
            held = self.load().await?;
            changes = self.changes(&held, actions, now);
        }
        let mut created = BTreeMap::new();
        match &self.target {
            EdgeTarget::IpList { account_id, .. } => {
                let list_id = self.list_id().await?;
                let ids: Vec<String> = changes
                    .removals
                    .iter()
                    .filter_map(|net| held.get(net).and_then(|h| h.id.clone()))
                    .collect();
                self.client
                    .remove_list_items(account_id, &list_id, &ids)
                    .await?;
                let items: Vec<NewItem> = changes
                    .upserts
                    .iter()
                    .map(|(net, entries)| NewItem::new(net_text(net), Some(encode(entries))))
                    .collect();
                self.client
                    .add_list_items(account_id, &list_id, &items)
                    .await?;
            }
            EdgeTarget::AccessRules(scope) => {
                for net in &changes.removals {
                    let Some(id) = held.get(net).and_then(|h| h.id.clone()) else {
                        continue;
                    };
                    match self.client.delete_access_rule(scope, &id).await {
                        Ok(()) => {}
                        // Gone already (deleted by an attempt whose answer was lost).
                        Err(Error::Api { status: 404, .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                for (net, entries) in &changes.upserts {
                    match held.get(net).and_then(|h| h.id.clone()) {
                        Some(id) => {
                            self.client
                                .update_access_rule_notes(scope, &id, &encode(entries))
                                .await?;
                        }
                        None => {
                            let rule = self
                                .client
                                .create_access_rule(
                                    scope,
                                    AccessMode::Block,
                                    &AccessTarget::for_net(net),
                                    &encode(entries),
                                )
                                .await?;
                            created.insert(*net, rule.id);
                        }
                    }
                }
            }
        }
        for net in &changes.removals {
            held.remove(net);
        }
        for (net, entries) in changes.upserts {
            let id = held
                .get(&net)
                .and_then(|h| h.id.clone())
                .or_else(|| created.remove(&net));
            held.insert(net, Held { id, entries });
        }
        *cache = Some(View { listed, held });
        Ok(())
    }

    /// What `actions` change, starting from the live entries of `held`.
    fn changes(&self, held: &BTreeMap<IpNet, Held>, actions: &[BanAction], now: u64) -> Changes {
        // Expired entries are dropped by the write that follows.
        let mut wanted: BTreeMap<IpNet, Entries> = held
            .iter()
            .map(|(net, h)| (*net, live(&h.entries, now)))
            .collect();
        for action in actions {
            let net = self.edge_net(action.target());
            match action {
                BanAction::Ban { jail, timeout, .. } => {
                    let until = timeout.map(|t| now + t.as_secs().max(1));
                    wanted.entry(net).or_default().insert(jail.clone(), until);
                }
                BanAction::Unban { jail, .. } => {
                    if let Some(entries) = wanted.get_mut(&net) {
                        entries.remove(jail);
                    }
                }
            }
        }
        let mut changes = Changes::default();
        for (net, entries) in wanted {
            let before = held.get(&net);
            if entries.is_empty() {
                if before.is_some() {
                    changes.removals.push(net);
                }
            } else if before.is_none_or(|h| h.entries != entries) {
                changes.upserts.push((net, entries));
            }
        }
        changes
    }
}

/// The writes one batch needs.
#[derive(Debug, Default)]
struct Changes {
    /// Targets whose item (rule) is written with these entries.
    upserts: Vec<(IpNet, Entries)>,
    /// Targets whose item (rule) is deleted.
    removals: Vec<IpNet>,
}

impl Changes {
    /// True if a removal (or a rule update) needs an id the cache does not know.
    fn needs_unknown_ids(&self, held: &BTreeMap<IpNet, Held>) -> bool {
        let unknown = |net: &IpNet| held.get(net).is_some_and(|h| h.id.is_none());
        self.removals.iter().any(unknown) || self.upserts.iter().any(|(net, _)| unknown(net))
    }
}

/// Parses `192.0.2.1`, `2001:db8::/64`.
fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| n.trunc())
}

fn net_text(net: &IpNet) -> String {
    logban::sink::target_text(net)
}

#[async_trait]
impl BanSink for CloudflareSink {
    async fn apply(&self, actions: &[BanAction]) -> logban::Result<()> {
        if actions.is_empty() {
            return Ok(());
        }
        self.apply_inner(actions).await.map_err(sink_error)
    }

    /// Always a fresh listing (the truth at Cloudflare), which also refreshes the cache.
    async fn list(&self, jail: &str) -> logban::Result<Vec<IpNet>> {
        let mut cache = self.cache.lock().await;
        let now = now_secs();
        let listed = tokio::time::Instant::now();
        let held = self.load().await.map_err(sink_error)?;
        let banned = held
            .iter()
            .filter(|(_, h)| live(&h.entries, now).contains_key(jail))
            .map(|(net, _)| *net)
            .collect();
        *cache = Some(View { listed, held });
        Ok(banned)
    }

    async fn prepare(&self, _jail: &logban::sink::SinkJail) -> logban::Result<()> {
        if matches!(self.target, EdgeTarget::IpList { .. }) {
            self.list_id().await.map_err(sink_error)?;
        }
        Ok(())
    }

    async fn cleanup(&self) -> logban::Result<()> {
        // From a fresh listing: every item this sink's mark is on, whoever added it.
        *self.cache.lock().await = None;
        let held = self.load().await.map_err(sink_error)?;
        let actions: Vec<BanAction> = held
            .iter()
            .flat_map(|(net, h)| {
                h.entries.keys().map(|jail| BanAction::Unban {
                    jail: jail.clone(),
                    target: *net,
                })
            })
            .collect();
        self.apply(&actions).await
    }

    fn name(&self) -> &str {
        "cloudflare"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_round_trip_and_foreign_ones_are_ignored() {
        let mut entries = Entries::new();
        entries.insert("sshd".into(), Some(1_767_225_600));
        entries.insert("nginx-auth".into(), None);
        let text = encode(&entries);
        assert_eq!(text, "hostguard nginx-auth@never sshd@1767225600");
        assert_eq!(decode_entries(&text), Some(entries));
        assert_eq!(decode_entries("added by hand"), None);
        assert_eq!(decode_entries("hostguard sshd@soon"), None);
    }
}
