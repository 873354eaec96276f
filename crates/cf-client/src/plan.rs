//! Declarative DNS: a file of desired records → a [`Plan`] (create, update, delete, unchanged)
//! shown as a diff → applied idempotently.
//!
//! The file owns the record sets (name and type) it mentions: records of those sets that the
//! file does not list are deleted, every other record of the zone is left alone unless
//! [`DesiredZone::prune`] is set.
//!
//! Idempotence: [`apply`] plans from a fresh listing, and when a step fails in a way that may
//! or may not have taken effect (a timeout, a dropped connection, a 5xx), it lists again and
//! re-plans instead of repeating the step blindly; a create answered with 81057/81058 (already
//! there) counts as done once the listing shows the record. A retried apply therefore never
//! creates a duplicate.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::client::Client;
use crate::dns::{
    CODE_RECORD_MISSING, DnsBatch, DnsFilter, DnsRecord, RecordSpec, is_already_there,
    normalize_host, spec_from_file,
};
use crate::{Error, Result};

/// The desired state of a zone, read from a TOML or JSON file.
///
/// ```toml
/// zone = "example.com"
/// prune = false            # delete records the file does not mention (default false)
///
/// [[record]]
/// name = "www"             # relative to the zone, "@" for the apex, or fully qualified
/// type = "A"
/// content = "192.0.2.10"
/// ttl = 300                # optional: 1 = automatic; unset = leave as it is
/// proxied = true           # optional
///
/// [[record]]
/// name = "@"
/// type = "CAA"
/// data = { flags = 0, tag = "issue", value = "letsencrypt.org" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DesiredZone {
    /// The zone's name.
    pub zone: String,
    /// Delete every record of the zone the file does not list.
    pub prune: bool,
    /// The desired records.
    pub records: Vec<RecordSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DesiredFile {
    zone: String,
    #[serde(default)]
    prune: bool,
    #[serde(default, rename = "record")]
    records: Vec<serde_json::Value>,
}

impl DesiredZone {
    /// Desired records for `zone`.
    pub fn new(zone: impl AsRef<str>, records: Vec<RecordSpec>) -> Self {
        DesiredZone {
            zone: normalize_host(zone.as_ref()),
            prune: false,
            records,
        }
    }

    /// Also deletes records the file does not list.
    pub fn with_prune(mut self, prune: bool) -> Self {
        self.prune = prune;
        self
    }

    /// Reads a `.toml` or `.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let file_error = |reason: String| Error::File {
            path: path.to_owned(),
            reason,
        };
        let file: DesiredFile = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?
        } else {
            toml::from_str(&text).map_err(|e| file_error(e.to_string()))?
        };
        let zone = normalize_host(&file.zone);
        if zone.is_empty() {
            return Err(file_error("`zone` is empty".into()));
        }
        let mut records = Vec::with_capacity(file.records.len());
        for (i, value) in file.records.into_iter().enumerate() {
            let spec = spec_from_file(value, &zone)
                .map_err(|reason| file_error(format!("record #{}: {reason}", i + 1)))?;
            if records
                .iter()
                .any(|r: &RecordSpec| r.name == spec.name && r.data == spec.data)
            {
                return Err(file_error(format!(
                    "record #{}: {} {} {} is listed twice",
                    i + 1,
                    spec.name,
                    spec.data.kind(),
                    spec.data.display_value()
                )));
            }
            records.push(spec);
        }
        Ok(DesiredZone {
            zone,
            prune: file.prune,
            records,
        })
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Create this record.
    Create(RecordSpec),
    /// Overwrite record `from` with `to`.
    Update {
        /// The record as it is.
        from: DnsRecord,
        /// What it becomes.
        to: RecordSpec,
    },
    /// Delete this record.
    Delete(DnsRecord),
    /// Already as desired.
    Unchanged(DnsRecord),
}

/// The changes that turn a zone into its desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Plan {
    /// The zone's id.
    pub zone_id: String,
    /// Every step, unchanged records included, sorted by name and type.
    pub changes: Vec<Change>,
}

/// Counts of a plan's or an apply's steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlanSummary {
    /// Records to create (created).
    pub create: usize,
    /// Records to update (updated).
    pub update: usize,
    /// Records to delete (deleted).
    pub delete: usize,
    /// Records already right.
    pub unchanged: usize,
}

impl fmt::Display for PlanSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} to create, {} to update, {} to delete, {} unchanged",
            self.create, self.update, self.delete, self.unchanged
        )
    }
}

impl Plan {
    /// Counts of each kind of step.
    pub fn summary(&self) -> PlanSummary {
        let mut s = PlanSummary::default();
        for c in &self.changes {
            match c {
                Change::Create(_) => s.create += 1,
                Change::Update { .. } => s.update += 1,
                Change::Delete(_) => s.delete += 1,
                Change::Unchanged(_) => s.unchanged += 1,
            }
        }
        s
    }

    /// True if applying would change nothing.
    pub fn is_empty(&self) -> bool {
        self.changes
            .iter()
            .all(|c| matches!(c, Change::Unchanged(_)))
    }
}

fn describe(spec: &RecordSpec) -> String {
    let mut text = format!(
        "{} {} {}",
        spec.name,
        spec.data.kind(),
        spec.data.display_value()
    );
    if let Some(ttl) = spec.ttl {
        text.push_str(&if ttl == 1 {
            " ttl=auto".to_owned()
        } else {
            format!(" ttl={ttl}")
        });
    }
    if let Some(p) = spec.proxied {
        text.push_str(if p { " proxied" } else { " dns-only" });
    }
    if let Some(c) = &spec.comment {
        text.push_str(&format!(" comment={c:?}"));
    }
    text
}

/// A diff: `+` create, `-` delete, `~` update (old and new), unchanged records not shown.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            match change {
                Change::Create(spec) => writeln!(f, "+ {}", describe(spec))?,
                Change::Delete(rec) => writeln!(f, "- {}", describe(&rec.spec))?,
                Change::Update { from, to } => {
                    writeln!(f, "~ {}", describe(&from.spec))?;
                    writeln!(f, "  → {}", describe(&merged(to, &from.spec)))?;
                }
                Change::Unchanged(_) => {}
            }
        }
        writeln!(f, "{}", self.summary())
    }
}

/// `to` with unset optional fields taken from `from` (what Cloudflare will hold after a PUT).
fn merged(to: &RecordSpec, from: &RecordSpec) -> RecordSpec {
    RecordSpec {
        name: to.name.clone(),
        data: to.data.clone(),
        ttl: to.ttl.or(from.ttl),
        proxied: if to.data.proxiable() {
            to.proxied.or(from.proxied)
        } else {
            None
        },
        comment: to.comment.clone().or_else(|| from.comment.clone()),
        tags: to.tags.clone().or_else(|| from.tags.clone()),
    }
}

/// True if `existing` already has every setting `desired` asks for.
fn settings_match(desired: &RecordSpec, existing: &RecordSpec) -> bool {
    fn want<T: PartialEq>(d: &Option<T>, e: &Option<T>) -> bool {
        d.is_none() || d == e
    }
    want(&desired.ttl, &existing.ttl)
        && (!desired.data.proxiable() || want(&desired.proxied, &existing.proxied))
        && want(&desired.comment, &existing.comment)
        && want(&desired.tags, &existing.tags)
}

/// Computes the plan from the desired state and the zone's current records (pure: no I/O).
pub fn diff(desired: &DesiredZone, zone_id: &str, existing: &[DnsRecord]) -> Plan {
    type Key = (String, String);
    let key = |s: &RecordSpec| (s.name.clone(), s.data.kind().to_owned());
    let mut want: BTreeMap<Key, Vec<&RecordSpec>> = BTreeMap::new();
    for spec in &desired.records {
        want.entry(key(spec)).or_default().push(spec);
    }
    let mut have: BTreeMap<Key, Vec<&DnsRecord>> = BTreeMap::new();
    for rec in existing {
        have.entry(key(&rec.spec)).or_default().push(rec);
    }
    let mut changes = Vec::new();
    let keys: std::collections::BTreeSet<&Key> = want.keys().chain(have.keys()).collect();
    for k in keys {
        let wanted = want.get(k).cloned().unwrap_or_default();
        let mut held: Vec<&DnsRecord> = have.get(k).cloned().unwrap_or_default();
        if wanted.is_empty() {
            if desired.prune && !is_protected(k) {
                changes.extend(held.into_iter().map(|r| Change::Delete(r.clone())));
            }
            continue;
        }
        // Same value first: those are unchanged or need only their settings updated.
        let mut unpaired = Vec::new();
        for spec in wanted {
            if let Some(pos) = held.iter().position(|r| r.spec.data == spec.data) {
                let rec = held.remove(pos);
                if settings_match(spec, &rec.spec) {
                    changes.push(Change::Unchanged(rec.clone()));
                } else {
                    changes.push(Change::Update {
                        from: rec.clone(),
                        to: spec.clone(),
                    });
                }
            } else {
                unpaired.push(spec);
            }
        }
        // Remaining desired values reuse remaining records (an update), then are created.
        held.sort_by(|a, b| a.spec.data.cmp(&b.spec.data));
        let mut held = held.into_iter();
        for spec in unpaired {
            match held.next() {
                Some(rec) => changes.push(Change::Update {
                    from: rec.clone(),
                    to: spec.clone(),
                }),
                None => changes.push(Change::Create(spec.clone())),
            }
        }
        changes.extend(held.map(|r| Change::Delete(r.clone())));
    }
    Plan {
        zone_id: zone_id.to_owned(),
        changes,
    }
}

/// The apex NS and SOA records are Cloudflare's; pruning never deletes them.
fn is_protected(key: &(String, String)) -> bool {
    key.1 == "SOA" || key.1 == "NS"
}

/// How [`apply`] sends changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplyMode {
    /// One request per change.
    OneByOne,
    /// The batch endpoint, `size` changes a request (200 is the Free plan's limit).
    Batch {
        /// Operations per batch.
        size: usize,
    },
}

/// What an apply did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyReport {
    /// Steps carried out (unchanged: records already right at the start).
    pub done: PlanSummary,
    /// How many times the zone was listed again after an uncertain failure.
    pub replans: u32,
}

impl Client {
    /// Lists the zone named in `desired` and plans the changes (nothing is changed: this is
    /// the dry run).
    pub async fn plan_dns(&self, desired: &DesiredZone) -> Result<Plan> {
        let zone = self.find_zone(&desired.zone).await?;
        let existing = self.list_dns_records(&zone.id, &DnsFilter::all()).await?;
        Ok(diff(desired, &zone.id, &existing))
    }
}

/// Applies `desired` to its zone: plans, carries out the plan, and re-plans from a fresh
/// listing after any failure that may have half-happened, until the plan is empty or
/// `max_replans` is exhausted.
pub async fn apply(
    client: &Client,
    desired: &DesiredZone,
    mode: ApplyMode,
    max_replans: u32,
) -> Result<ApplyReport> {
    let zone = client.find_zone(&desired.zone).await?;
    let mut report = ApplyReport::default();
    let mut first = true;
    loop {
        let existing = client.list_dns_records(&zone.id, &DnsFilter::all()).await?;
        let plan = diff(desired, &zone.id, &existing);
        if first {
            report.done.unchanged = plan.summary().unchanged;
            first = false;
        }
        if plan.is_empty() {
            return Ok(report);
        }
        let outcome = match mode {
            ApplyMode::OneByOne => apply_one_by_one(client, &plan, &mut report.done).await,
            ApplyMode::Batch { size } => apply_batches(client, &plan, size, &mut report.done).await,
        };
        match outcome {
            Ok(()) => {}
            Err(e) if report.replans < max_replans && may_have_half_happened(&e) => {
                tracing::warn!(error = %e, "DNS apply step failed; listing again to re-plan");
            }
            Err(e) => return Err(e),
        }
        report.replans += 1;
        if report.replans > max_replans {
            // One more listing proved the plan is still not empty.
            return Err(Error::InvalidConfig {
                field: "dns plan".into(),
                reason: format!(
                    "zone {} did not converge after {max_replans} re-plans",
                    desired.zone
                ),
            });
        }
    }
}

/// Failures after which the change may or may not be in effect: list and re-plan.
fn may_have_half_happened(error: &Error) -> bool {
    matches!(
        error,
        Error::Transport { .. } | Error::Timeout { .. } | Error::RateLimited { .. }
    ) || matches!(error, Error::Api { status, .. } if *status >= 500)
        || is_already_there(error)
        || error.has_code(CODE_RECORD_MISSING)
}

async fn apply_one_by_one(client: &Client, plan: &Plan, done: &mut PlanSummary) -> Result<()> {
    let zone = &plan.zone_id;
    // Deletes first, so a record moving between types (A → CNAME) does not conflict.
    for change in &plan.changes {
        if let Change::Delete(rec) = change {
            match client.delete_dns_record(zone, &rec.id).await {
                Ok(()) => {}
                Err(e) if e.has_code(CODE_RECORD_MISSING) => {}
                Err(e) => return Err(e),
            }
            done.delete += 1;
        }
    }
    for change in &plan.changes {
        match change {
            Change::Update { from, to } => {
                client
                    .overwrite_dns_record(zone, &from.id, &merged(to, &from.spec))
                    .await?;
                done.update += 1;
            }
            Change::Create(spec) => {
                // 81057/81058 (created by an attempt whose answer was lost) make `apply`
                // list again; the re-plan then shows the record as there.
                client.create_dns_record(zone, spec).await?;
                done.create += 1;
            }
            Change::Delete(_) | Change::Unchanged(_) => {}
        }
    }
    Ok(())
}

async fn apply_batches(
    client: &Client,
    plan: &Plan,
    size: usize,
    done: &mut PlanSummary,
) -> Result<()> {
    let size = size.max(1);
    let mut batch = DnsBatch::default();
    let mut counts = PlanSummary::default();
    // Deletes, then updates, then creates, the order Cloudflare applies them in.
    let ordered = plan
        .changes
        .iter()
        .filter(|c| matches!(c, Change::Delete(_)))
        .chain(
            plan.changes
                .iter()
                .filter(|c| matches!(c, Change::Update { .. })),
        )
        .chain(
            plan.changes
                .iter()
                .filter(|c| matches!(c, Change::Create(_))),
        );
    for change in ordered {
        match change {
            Change::Delete(rec) => {
                batch.deletes.push(rec.id.clone());
                counts.delete += 1;
            }
            Change::Update { from, to } => {
                batch.puts.push((from.id.clone(), merged(to, &from.spec)));
                counts.update += 1;
            }
            Change::Create(spec) => {
                batch.posts.push(spec.clone());
                counts.create += 1;
            }
            Change::Unchanged(_) => continue,
        }
        if batch.len() >= size {
            client.dns_batch(&plan.zone_id, &batch).await?;
            add(done, &counts);
            batch = DnsBatch::default();
            counts = PlanSummary::default();
        }
    }
    if !batch.is_empty() {
        client.dns_batch(&plan.zone_id, &batch).await?;
        add(done, &counts);
    }
    Ok(())
}

fn add(total: &mut PlanSummary, part: &PlanSummary) {
    total.create += part.create;
    total.update += part.update;
    total.delete += part.delete;
}

/// The records of a plan that a dry run would create (for tools that print them apart).
pub fn creates(plan: &Plan) -> impl Iterator<Item = &RecordSpec> {
    plan.changes.iter().filter_map(|c| match c {
        Change::Create(s) => Some(s),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::RecordData;

    fn rec(id: &str, name: &str, data: RecordData, ttl: u32) -> DnsRecord {
        DnsRecord {
            id: id.into(),
            spec: RecordSpec::new(name, data)
                .with_ttl(ttl)
                .with_proxied(false),
            proxiable: true,
        }
    }

    #[test]
    fn diff_pairs_values_and_leaves_unmanaged_sets_alone() {
        let a = |s: &str| RecordData::A(s.parse().expect("ip"));
        let existing = vec![
            rec("1", "www.e.com", a("192.0.2.1"), 300),
            rec("2", "www.e.com", a("192.0.2.2"), 300),
            rec("3", "api.e.com", a("192.0.2.3"), 300),
            rec("4", "other.e.com", a("192.0.2.4"), 300),
        ];
        let desired = DesiredZone::new(
            "e.com",
            vec![
                RecordSpec::new("www.e.com", a("192.0.2.1")).with_ttl(300),
                RecordSpec::new("api.e.com", a("192.0.2.3")).with_ttl(60),
                RecordSpec::new("new.e.com", RecordData::Txt("hi".into())),
            ],
        );
        let plan = diff(&desired, "z", &existing);
        let s = plan.summary();
        assert_eq!((s.create, s.update, s.delete, s.unchanged), (1, 1, 1, 1));
        assert!(
            plan.changes
                .iter()
                .any(|c| matches!(c, Change::Delete(r) if r.id == "2"))
        );
        let text = plan.to_string();
        assert!(text.contains("+ new.e.com TXT \"hi\""), "{text}");
        assert!(text.contains("- www.e.com A 192.0.2.2"), "{text}");
        assert!(text.contains("~ api.e.com A 192.0.2.3 ttl=300"), "{text}");
        assert!(text.contains("→ api.e.com A 192.0.2.3 ttl=60"), "{text}");
        assert!(!text.contains("other.e.com"), "{text}");
        let pruned = diff(&desired.clone().with_prune(true), "z", &existing);
        assert_eq!(pruned.summary().delete, 2);
    }

    #[test]
    fn a_changed_value_of_a_single_record_is_an_update() {
        let existing = vec![rec("9", "x.e.com", RecordData::Cname("a.e.com".into()), 1)];
        let desired = DesiredZone::new(
            "e.com",
            vec![RecordSpec::new(
                "x.e.com",
                RecordData::Cname("b.e.com".into()),
            )],
        );
        let plan = diff(&desired, "z", &existing);
        assert!(matches!(&plan.changes[..], [Change::Update { from, .. }] if from.id == "9"));
    }
}
