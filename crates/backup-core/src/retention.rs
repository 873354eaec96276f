//! Retention: which snapshots a [`RetentionPolicy`] keeps, and forgetting the others.
//!
//! The rules are restic's (`restic forget --keep-*`), applied to each group of snapshots
//! separately (by host and paths unless [`GroupBy`] says otherwise), newest first:
//!
//! * `keep-last n`: the `n` newest snapshots;
//! * `keep-hourly/daily/weekly/monthly/yearly n`: the newest snapshot of each of the last `n`
//!   hours, days, ISO weeks, months or years that hold a snapshot; while a rule has counts left
//!   when it reaches the oldest snapshot of the group, that one is kept too (as restic does, so a
//!   young repository keeps its full history);
//! * `keep-within d`: every snapshot taken less than `d` before the group's newest one;
//! * `keep-within-hourly/daily/... d`: the newest snapshot of every hour, day, ... among those
//!   taken less than `d` before the group's newest one;
//! * `keep-tag t`: every snapshot tagged `t`.
//!
//! A policy can also look at only some snapshots (restic's `--host`, `--tag`, `--path`:
//! [`RetentionPolicyBuilder::with_only_host`] and its siblings); the others are left alone.
//!
//! Durations are written as restic writes them: `1y6m`, `14d`, `36h`, `2y3m7d12h` (`m` is a
//! month). Hours, days, weeks, months and years are counted in UTC, so a policy means the same
//! on every host; a duration is subtracted on the calendar (one month before 31 March is
//! 3 March, as in restic).
//!
//! Forgetting deletes `snapshots/` objects only: the data and trees they referenced stay in
//! the repository until a prune removes what no snapshot needs, and this crate has no prune
//! yet. Damaged snapshot objects (see [`Repository::skipped_objects`]) are neither kept nor
//! removed.
//!
//! # Recommended policy
//!
//! For a web host, short term: every snapshot of the last two days (`keep-within 2d`), then one
//! a day for two weeks (`keep-daily 14`); long term: one a week for two months
//! (`keep-weekly 8`), one a month for a year (`keep-monthly 12`) and one a year for five years
//! (`keep-yearly 5`), plus anything tagged `keep` (before a migration, say):
//!
//! ```
//! use backup_core::retention::{RetentionDuration, RetentionPolicy};
//! let policy = RetentionPolicy::builder()
//!     .with_keep_within("2d".parse::<RetentionDuration>()?)
//!     .with_keep_daily(14)
//!     .with_keep_weekly(8)
//!     .with_keep_monthly(12)
//!     .with_keep_yearly(5)
//!     .with_keep_tag("keep")
//!     .build()?;
//! # let _ = policy;
//! # Ok::<(), backup_core::Error>(())
//! ```

use std::collections::BTreeMap;

use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::Snapshot;
use crate::repo::Repository;

/// A calendar duration as restic writes it: years, months, days and hours (`1y6m`, `14d`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionDuration {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl std::str::FromStr for RetentionDuration {
    type Err = Error;

    /// Parses `NyNmNdNh` (any subset, each unit at most once, in any order).
    fn from_str(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::Config(format!(
                "duration {text:?}: {why} (write it as restic does, e.g. 1y6m, 14d, 36h)"
            ))
        };
        let mut duration = RetentionDuration::default();
        let mut seen = [false; 4];
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let slot = match c {
                'y' => 0,
                'm' => 1,
                'd' => 2,
                'h' => 3,
                _ => return Err(bad(&format!("unknown unit {c:?}"))),
            };
            if digits.is_empty() {
                return Err(bad(&format!("no number before {c:?}")));
            }
            if std::mem::replace(&mut seen[slot], true) {
                return Err(bad(&format!("unit {c:?} given twice")));
            }
            let n: u32 = digits.parse().map_err(|_| bad("number too large"))?;
            digits.clear();
            match slot {
                0 => duration.years = n,
                1 => duration.months = n,
                2 => duration.days = n,
                _ => duration.hours = n,
            }
        }
        if !digits.is_empty() {
            return Err(bad("a number without a unit"));
        }
        if !seen.contains(&true) {
            return Err(bad("empty"));
        }
        Ok(duration)
    }
}

impl std::fmt::Display for RetentionDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts = [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ];
        let mut any = false;
        for (n, unit) in parts {
            if n > 0 {
                write!(f, "{n}{unit}")?;
                any = true;
            }
        }
        if !any {
            f.write_str("0h")?;
        }
        Ok(())
    }
}

impl RetentionDuration {
    /// `time_ns` minus this duration, subtracting years and months on the calendar (UTC).
    fn before(&self, time_ns: i64) -> i64 {
        const DAY_NS: i64 = 86_400 * 1_000_000_000;
        let day = time_ns.div_euclid(DAY_NS);
        let in_day = time_ns.rem_euclid(DAY_NS);
        let (y, m, d) = civil_from_days(day);
        let months = y * 12 + (m - 1) - i64::from(self.years) * 12 - i64::from(self.months);
        let (y, m) = (months.div_euclid(12), months.rem_euclid(12) + 1);
        // Day d of the new month; a day past its end rolls over, as Go's AddDate does.
        let day = days_from_civil(y, m, 1) + (d - 1) - i64::from(self.days);
        (day * DAY_NS + in_day).saturating_sub(i64::from(self.hours) * 3_600 * 1_000_000_000)
    }
}

/// Which snapshots form one group, to which a policy applies separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by the backed-up paths.
    pub paths: bool,
    /// Group by the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    /// By host and paths, as restic.
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl GroupBy {
    /// Groups by the given fields; all `false` puts every snapshot in one group.
    pub fn new(host: bool, paths: bool, tags: bool) -> Self {
        GroupBy { host, paths, tags }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = Error;

    /// Parses a comma-separated subset of `host`, `paths`, `tags`; an empty string is one group.
    fn from_str(text: &str) -> Result<Self> {
        let mut group = GroupBy::new(false, false, false);
        for field in text.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            match field {
                "host" => group.host = true,
                "paths" => group.paths = true,
                "tags" => group.tags = true,
                other => {
                    return Err(Error::Config(format!(
                        "group-by field {other:?}: expected host, paths or tags"
                    )));
                }
            }
        }
        Ok(group)
    }
}

/// The time buckets of the counting rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

const BUCKETS: [Bucket; 5] = [
    Bucket::Hour,
    Bucket::Day,
    Bucket::Week,
    Bucket::Month,
    Bucket::Year,
];

impl Bucket {
    fn name(self) -> &'static str {
        match self {
            Bucket::Hour => "hourly",
            Bucket::Day => "daily",
            Bucket::Week => "weekly",
            Bucket::Month => "monthly",
            Bucket::Year => "yearly",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
            Bucket::Week => "week",
            Bucket::Month => "month",
            Bucket::Year => "year",
        }
    }

    /// The bucket (UTC hour, day, ISO week, month or year) a time falls in.
    fn of(self, time_ns: i64) -> i64 {
        let secs = time_ns.div_euclid(1_000_000_000);
        let day = secs.div_euclid(86_400);
        match self {
            Bucket::Hour => secs.div_euclid(3_600),
            Bucket::Day => day,
            Bucket::Week => {
                // The ISO week-year is the year of the week's Thursday (1970-01-01 was one).
                let monday_based = (day + 3).rem_euclid(7);
                let thursday = day - monday_based + 3;
                let (year, _, _) = civil_from_days(thursday);
                let week = (thursday - days_from_civil(year, 1, 1)) / 7 + 1;
                year * 100 + week
            }
            Bucket::Month => {
                let (y, m, _) = civil_from_days(day);
                y * 12 + m
            }
            Bucket::Year => civil_from_days(day).0,
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date (year, month, day) of a day since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + 1 } else { yoe } + era * 400, m, d)
}

/// Which snapshots to keep; built by [`RetentionPolicy::builder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    last: u32,
    counts: [u32; 5],
    within: Option<RetentionDuration>,
    within_buckets: [Option<RetentionDuration>; 5],
    tags: Vec<String>,
    group_by: GroupBy,
    only: Selection,
}

/// Which snapshots a policy looks at (restic's `--host`, `--tag`, `--path`); empty lists match
/// every snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Selection {
    hosts: Vec<String>,
    tags: Vec<String>,
    paths: Vec<String>,
}

impl Selection {
    fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.host))
            && (self.tags.is_empty() || self.tags.iter().any(|t| s.tags.contains(t)))
            && (self.paths.is_empty() || self.paths.iter().all(|p| s.paths.contains(p)))
    }
}

/// Builds a [`RetentionPolicy`]; `build` refuses a policy that keeps nothing.
#[derive(Debug, Clone)]
pub struct RetentionPolicyBuilder(RetentionPolicy);

impl RetentionPolicy {
    /// A builder with no rule yet, grouping by host and paths.
    pub fn builder() -> RetentionPolicyBuilder {
        RetentionPolicyBuilder(RetentionPolicy {
            last: 0,
            counts: [0; 5],
            within: None,
            within_buckets: [None; 5],
            tags: Vec::new(),
            group_by: GroupBy::default(),
            only: Selection::default(),
        })
    }

    /// How snapshots are grouped.
    pub fn group_by(&self) -> GroupBy {
        self.group_by
    }
}

macro_rules! bucket_setters {
    ($($count:ident, $within:ident, $slot:expr, $unit:literal;)*) => {$(
        #[doc = concat!("Keeps the newest snapshot of each of the last `n` ", $unit, "s that hold one.")]
        pub fn $count(mut self, n: u32) -> Self {
            self.0.counts[$slot] = n;
            self
        }

        #[doc = concat!("Keeps the newest snapshot of every ", $unit,
            " among those taken less than `d` before the group's newest.")]
        pub fn $within(mut self, d: RetentionDuration) -> Self {
            self.0.within_buckets[$slot] = Some(d);
            self
        }
    )*};
}

impl RetentionPolicyBuilder {
    /// Keeps the `n` newest snapshots.
    pub fn with_keep_last(mut self, n: u32) -> Self {
        self.0.last = n;
        self
    }

    bucket_setters! {
        with_keep_hourly, with_keep_within_hourly, 0, "hour";
        with_keep_daily, with_keep_within_daily, 1, "day";
        with_keep_weekly, with_keep_within_weekly, 2, "ISO week";
        with_keep_monthly, with_keep_within_monthly, 3, "month";
        with_keep_yearly, with_keep_within_yearly, 4, "year";
    }

    /// Keeps every snapshot taken less than `d` before the group's newest.
    pub fn with_keep_within(mut self, d: RetentionDuration) -> Self {
        self.0.within = Some(d);
        self
    }

    /// Keeps every snapshot tagged `tag` (repeatable: any of the tags keeps a snapshot).
    pub fn with_keep_tag(mut self, tag: impl Into<String>) -> Self {
        self.0.tags.push(tag.into());
        self
    }

    /// Looks only at snapshots of this host (repeatable: any of them); the others are left
    /// alone and not listed.
    pub fn with_only_host(mut self, host: impl Into<String>) -> Self {
        self.0.only.hosts.push(host.into());
        self
    }

    /// Looks only at snapshots with this tag (repeatable: any of them).
    pub fn with_only_tag(mut self, tag: impl Into<String>) -> Self {
        self.0.only.tags.push(tag.into());
        self
    }

    /// Looks only at snapshots that include this backed-up path (repeatable: all of them).
    pub fn with_only_path(mut self, path: impl Into<String>) -> Self {
        self.0.only.paths.push(path.into());
        self
    }

    /// Sets how snapshots are grouped (default: host and paths).
    pub fn with_group_by(mut self, group_by: GroupBy) -> Self {
        self.0.group_by = group_by;
        self
    }

    /// Checks the policy: one that keeps nothing (no rule, or only zero counts) is refused, as
    /// it would forget every snapshot.
    pub fn build(self) -> Result<RetentionPolicy> {
        let p = &self.0;
        let empty = p.last == 0
            && p.counts.iter().all(|&n| n == 0)
            && p.within.is_none()
            && p.within_buckets.iter().all(Option::is_none)
            && p.tags.is_empty();
        if empty {
            return Err(Error::Config(
                "the retention policy keeps nothing: give at least one keep rule".into(),
            ));
        }
        if p.tags.iter().any(String::is_empty) {
            return Err(Error::Config("keep-tag: empty tag".into()));
        }
        Ok(self.0)
    }
}

/// The fields a group of snapshots shares (those [`GroupBy`] names; the others are `None`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[non_exhaustive]
pub struct GroupKey {
    /// Host name, when grouping by host.
    pub host: Option<String>,
    /// Sorted paths, when grouping by paths.
    pub paths: Option<Vec<String>>,
    /// Sorted tags, when grouping by tags.
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    fn of(snapshot: &Snapshot, by: GroupBy) -> Self {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        GroupKey {
            host: by.host.then(|| snapshot.host.clone()),
            paths: by.paths.then(|| sorted(&snapshot.paths)),
            tags: by.tags.then(|| sorted(&snapshot.tags)),
        }
    }
}

/// What a policy decided for one snapshot.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Decision {
    /// Snapshot id.
    pub id: String,
    /// Snapshot time, ns since the epoch.
    pub time_ns: i64,
    /// Whether the snapshot is kept.
    pub keep: bool,
    /// Kept: every rule that keeps it (`last`, `daily`, `oldest (daily)`, `within 2d`,
    /// `within-daily 1m`, `tag keep`). Removed: why each rule passed it over.
    pub reasons: Vec<String>,
}

/// One group of snapshots and the decisions for them, newest first.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ForgetGroup {
    /// What the group's snapshots share.
    pub key: GroupKey,
    /// One decision per snapshot, newest first.
    pub decisions: Vec<Decision>,
}

impl ForgetGroup {
    /// Snapshots kept.
    pub fn kept(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| d.keep)
    }

    /// Snapshots to remove.
    pub fn removed(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| !d.keep)
    }
}

/// Applies `policy` to `snapshots` (id and snapshot, in any order): groups those it looks at
/// (see [`RetentionPolicyBuilder::with_only_host`]), then decides for each one. Groups come in
/// key order, each newest first (ties broken by id).
pub fn apply_policy(
    snapshots: &[(String, Snapshot)],
    policy: &RetentionPolicy,
) -> Vec<ForgetGroup> {
    let mut groups: BTreeMap<GroupKey, Vec<&(String, Snapshot)>> = BTreeMap::new();
    for entry in snapshots.iter().filter(|(_, s)| policy.only.matches(s)) {
        groups
            .entry(GroupKey::of(&entry.1, policy.group_by))
            .or_default()
            .push(entry);
    }
    groups
        .into_iter()
        .map(|(key, mut list)| {
            list.sort_by(|a, b| b.1.time_ns.cmp(&a.1.time_ns).then(b.0.cmp(&a.0)));
            ForgetGroup {
                key,
                decisions: decide(&list, policy),
            }
        })
        .collect()
}

/// Decides for one group, sorted newest first.
fn decide(list: &[&(String, Snapshot)], policy: &RetentionPolicy) -> Vec<Decision> {
    let latest = list.first().map_or(0, |(_, s)| s.time_ns);
    let within_after = policy.within.map(|d| d.before(latest));
    let within_buckets = policy
        .within_buckets
        .map(|d| d.map(|d| (d, d.before(latest))));
    let mut left = policy.counts;
    let mut last_bucket: [Option<i64>; 5] = [None; 5];
    let mut last_within_bucket: [Option<i64>; 5] = [None; 5];
    let mut decisions = Vec::with_capacity(list.len());
    for (nr, (id, snapshot)) in list.iter().enumerate() {
        let time = snapshot.time_ns;
        let oldest = nr + 1 == list.len();
        let mut kept = Vec::new();
        let mut passed = Vec::new();
        if policy.last > 0 {
            if nr < policy.last as usize {
                kept.push("last".to_string());
            } else {
                passed.push(format!("not among the last {}", policy.last));
            }
        }
        for (slot, bucket) in BUCKETS.into_iter().enumerate() {
            if policy.counts[slot] == 0 {
                continue;
            }
            let value = bucket.of(time);
            if left[slot] == 0 {
                passed.push(format!(
                    "{}: the {} {}s kept are newer",
                    bucket.name(),
                    policy.counts[slot],
                    bucket.unit()
                ));
            } else if last_bucket[slot] != Some(value) {
                kept.push(bucket.name().to_string());
                left[slot] -= 1;
                last_bucket[slot] = Some(value);
            } else if oldest {
                kept.push(format!("oldest ({})", bucket.name()));
                left[slot] -= 1;
            } else {
                passed.push(format!(
                    "{}: a newer snapshot of its {} is kept",
                    bucket.name(),
                    bucket.unit()
                ));
            }
        }
        if let (Some(d), Some(after)) = (policy.within, within_after) {
            if time > after {
                kept.push(format!("within {d}"));
            } else {
                passed.push(format!("older than {d} before the newest"));
            }
        }
        for (slot, bucket) in BUCKETS.into_iter().enumerate() {
            let Some((d, after)) = within_buckets[slot] else {
                continue;
            };
            let name = format!("within-{} {d}", bucket.name());
            if time <= after {
                passed.push(format!("{name}: older than {d} before the newest"));
                continue;
            }
            let value = bucket.of(time);
            if last_within_bucket[slot] != Some(value) || oldest {
                kept.push(name);
                last_within_bucket[slot] = Some(value);
            } else {
                passed.push(format!(
                    "{name}: a newer snapshot of its {} is kept",
                    bucket.unit()
                ));
            }
        }
        if !policy.tags.is_empty() {
            match policy.tags.iter().find(|t| snapshot.tags.contains(t)) {
                Some(tag) => kept.push(format!("tag {tag}")),
                None => passed.push(format!("has none of the tags {}", policy.tags.join(", "))),
            }
        }
        let keep = !kept.is_empty();
        decisions.push(Decision {
            id: id.clone(),
            time_ns: time,
            keep,
            reasons: if keep { kept } else { passed },
        });
    }
    decisions
}

impl Repository {
    /// Applies `policy` to the repository's snapshots and, unless `dry_run`, deletes the
    /// `snapshots/` objects of those it does not keep. Returns every group with the decision
    /// for each snapshot (what a dry run shows).
    ///
    /// Only snapshot objects are deleted: the data they referenced stays until a prune (which
    /// this crate does not have yet). A snapshot object that vanished meanwhile (another
    /// forget) counts as deleted.
    pub async fn forget(
        &self,
        policy: &RetentionPolicy,
        dry_run: bool,
    ) -> Result<Vec<ForgetGroup>> {
        if !dry_run {
            self.refuse_if_append_only("forget")?;
        }
        let snapshots = self.snapshots().await?;
        let groups = apply_policy(&snapshots, policy);
        if !dry_run {
            for decision in groups.iter().flat_map(ForgetGroup::removed) {
                let name = format!("snapshots/{}", decision.id);
                match self
                    .store
                    .delete(&object_store::path::Path::from(name.as_str()))
                    .await
                {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(Error::store(name, e)),
                }
            }
        }
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_matches_known_dates() {
        // 2000-03-01 is day 11017; 1969-12-31 is day -1; 2024-02-29 is day 19782.
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        // 2021-01-03 (a Sunday) is in ISO week 2020-53; 2021-01-04 starts 2021-01.
        let ns = |d: i64| d * 86_400 * 1_000_000_000;
        assert_eq!(Bucket::Week.of(ns(days_from_civil(2021, 1, 3))), 202_053);
        assert_eq!(Bucket::Week.of(ns(days_from_civil(2021, 1, 4))), 202_101);
    }

    #[test]
    fn month_subtraction_rolls_over_like_restic() {
        let ns = |d: i64| d * 86_400 * 1_000_000_000;
        let one_month = RetentionDuration {
            months: 1,
            ..Default::default()
        };
        // 31 March 2021 minus a month is "31 February" = 3 March.
        assert_eq!(
            one_month.before(ns(days_from_civil(2021, 3, 31))),
            ns(days_from_civil(2021, 3, 3))
        );
    }

    #[test]
    fn durations_parse_and_reject_garbage() {
        let d: RetentionDuration = "2y3m7d12h".parse().unwrap();
        assert_eq!((d.years, d.months, d.days, d.hours), (2, 3, 7, 12));
        assert_eq!(d.to_string(), "2y3m7d12h");
        for bad in ["", "7", "d", "7w", "1d1d", "-1d", "99999999999d"] {
            assert!(bad.parse::<RetentionDuration>().is_err(), "{bad:?}");
        }
    }
}
