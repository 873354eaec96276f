//! Retention policies against a simple reference model (written here with the `time` crate's
//! calendar, not the crate's own), and `Repository::forget` on a real repository.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use backup_core::conformance::{memory_repository, snapshot_ids};
use backup_core::format::{ChunkId, Snapshot, Summary};
use backup_core::retention::{GroupBy, RetentionDuration, RetentionPolicy, apply_policy};
use backup_core::{BackupOptions, NoProgress};
use proptest::prelude::*;
use time::{Date, Duration, OffsetDateTime};

const BASE_NS: i64 = 1_600_000_000 * 1_000_000_000; // 2020-09-13

fn snapshot(time_ns: i64, host: &str, paths: &[&str], tags: &[&str]) -> Snapshot {
    Snapshot {
        time_ns,
        host: host.into(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        parent: None,
        tree: ChunkId([0; 32]),
        summary: Summary::default(),
        skipped: Vec::new(),
        changed: Vec::new(),
    }
}

fn utc(ns: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)).expect("time in range")
}

/// The reference model's calendar buckets: hour, day, ISO week, month, year.
fn bucket(kind: usize, ns: i64) -> (i32, u32, u32) {
    let t = utc(ns);
    let d = t.date();
    match kind {
        0 => (d.year(), d.ordinal().into(), t.hour().into()),
        1 => (d.year(), d.ordinal().into(), 0),
        2 => {
            let (y, w, _) = d.to_iso_week_date();
            (y, w.into(), 0)
        }
        3 => (d.year(), u8::from(d.month()).into(), 0),
        _ => (d.year(), 0, 0),
    }
}

/// `ns` minus a calendar duration, with day overflow rolling into the next month (restic).
fn minus(ns: i64, d: RetentionDuration) -> i64 {
    let t = utc(ns);
    let months =
        t.year() * 12 + i32::from(u8::from(t.month())) - 1 - (d.years * 12 + d.months) as i32;
    let month = time::Month::try_from((months.rem_euclid(12) + 1) as u8).expect("month");
    let first = Date::from_calendar_date(months.div_euclid(12), month, 1).expect("date");
    let date = first + Duration::days(i64::from(t.day()) - 1 - i64::from(d.days));
    let back = date.with_time(t.time()).assume_utc() - Duration::hours(d.hours.into());
    i64::try_from(back.unix_timestamp_nanos()).expect("fits")
}

/// Which indices of `list` (newest first) the rules keep, computed the plain way.
fn model(list: &[(String, Snapshot)], rules: &Rules) -> BTreeSet<usize> {
    let mut keep = BTreeSet::new();
    keep.extend(0..(rules.last as usize).min(list.len()));
    for kind in 0..5 {
        let n = rules.counts[kind] as usize;
        if n == 0 {
            continue;
        }
        // The newest snapshot of each of the first n distinct buckets.
        let mut seen = Vec::new();
        for (i, (_, s)) in list.iter().enumerate() {
            let b = bucket(kind, s.time_ns);
            if !seen.contains(&b) {
                seen.push(b);
                if seen.len() <= n {
                    keep.insert(i);
                }
            }
        }
        // The oldest too, while the rule had counts left when it got there.
        let before_oldest: BTreeSet<_> = list[..list.len() - 1]
            .iter()
            .map(|(_, s)| bucket(kind, s.time_ns))
            .collect();
        if before_oldest.len() < n {
            keep.insert(list.len() - 1);
        }
    }
    let latest = list[0].1.time_ns;
    if let Some(d) = rules.within {
        let after = minus(latest, d);
        keep.extend((0..list.len()).filter(|&i| list[i].1.time_ns > after));
    }
    for kind in 0..5 {
        let Some(d) = rules.within_buckets[kind] else {
            continue;
        };
        let after = minus(latest, d);
        let mut seen = BTreeSet::new();
        for (i, (_, s)) in list.iter().enumerate() {
            if s.time_ns > after && (seen.insert(bucket(kind, s.time_ns)) || i == list.len() - 1) {
                keep.insert(i);
            }
        }
    }
    for (i, (_, s)) in list.iter().enumerate() {
        if rules.tags.iter().any(|t| s.tags.contains(t)) {
            keep.insert(i);
        }
    }
    keep
}

#[derive(Debug, Clone)]
struct Rules {
    last: u32,
    counts: [u32; 5],
    within: Option<RetentionDuration>,
    within_buckets: [Option<RetentionDuration>; 5],
    tags: Vec<String>,
    group_by: (bool, bool, bool),
}

impl Rules {
    fn policy(&self) -> backup_core::Result<RetentionPolicy> {
        let mut b = RetentionPolicy::builder()
            .with_keep_last(self.last)
            .with_keep_hourly(self.counts[0])
            .with_keep_daily(self.counts[1])
            .with_keep_weekly(self.counts[2])
            .with_keep_monthly(self.counts[3])
            .with_keep_yearly(self.counts[4])
            .with_group_by(GroupBy::new(
                self.group_by.0,
                self.group_by.1,
                self.group_by.2,
            ));
        if let Some(d) = self.within {
            b = b.with_keep_within(d);
        }
        let setters = [
            RetentionPolicyBuilderFn::hourly,
            RetentionPolicyBuilderFn::daily,
            RetentionPolicyBuilderFn::weekly,
            RetentionPolicyBuilderFn::monthly,
            RetentionPolicyBuilderFn::yearly,
        ];
        for (set, d) in setters.iter().zip(self.within_buckets) {
            if let Some(d) = d {
                b = set(b, d);
            }
        }
        for t in &self.tags {
            b = b.with_keep_tag(t);
        }
        b.build()
    }

    fn keeps_nothing(&self) -> bool {
        self.last == 0
            && self.counts == [0; 5]
            && self.within.is_none()
            && self.within_buckets.iter().all(Option::is_none)
            && self.tags.is_empty()
    }
}

/// The within-bucket setters by slot.
struct RetentionPolicyBuilderFn;

type Builder = backup_core::retention::RetentionPolicyBuilder;

impl RetentionPolicyBuilderFn {
    fn hourly(b: Builder, d: RetentionDuration) -> Builder {
        b.with_keep_within_hourly(d)
    }
    fn daily(b: Builder, d: RetentionDuration) -> Builder {
        b.with_keep_within_daily(d)
    }
    fn weekly(b: Builder, d: RetentionDuration) -> Builder {
        b.with_keep_within_weekly(d)
    }
    fn monthly(b: Builder, d: RetentionDuration) -> Builder {
        b.with_keep_within_monthly(d)
    }
    fn yearly(b: Builder, d: RetentionDuration) -> Builder {
        b.with_keep_within_yearly(d)
    }
}

fn duration() -> impl Strategy<Value = Option<RetentionDuration>> {
    prop::option::weighted(
        0.3,
        (0u32..2, 0u32..14, 0u32..40, 0u32..50).prop_map(|(years, months, days, hours)| {
            RetentionDuration {
                years,
                months,
                days,
                hours,
            }
        }),
    )
}

fn count() -> impl Strategy<Value = u32> {
    prop_oneof![3 => Just(0u32), 2 => 1u32..6, 1 => 6u32..40]
}

fn rules() -> impl Strategy<Value = Rules> {
    (
        count(),
        [count(), count(), count(), count(), count()],
        duration(),
        [duration(), duration(), duration(), duration(), duration()],
        prop::collection::vec(prop::sample::select(vec!["keep", "nightly"]), 0..2),
        (any::<bool>(), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(last, counts, within, within_buckets, tags, group_by)| Rules {
                last,
                counts,
                within,
                within_buckets,
                tags: tags.into_iter().map(String::from).collect(),
                group_by,
            },
        )
}

/// Snapshots spread over minutes, weeks or years, so buckets are shared or not.
fn snapshots() -> impl Strategy<Value = Vec<(String, Snapshot)>> {
    let span = prop_oneof![Just(600i64), Just(60 * 24 * 60), Just(60 * 24 * 365 * 4)];
    span.prop_flat_map(|span_minutes| {
        prop::collection::vec(
            (
                0..span_minutes * 60,
                prop::sample::select(vec!["web1", "web2"]),
                prop::sample::select(vec![vec!["/srv"], vec!["/srv", "/etc"]]),
                prop::collection::vec(prop::sample::select(vec!["keep", "nightly", "x"]), 0..2),
            ),
            1..40,
        )
    })
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (secs, host, paths, tags))| {
                (
                    format!("{i:032x}"),
                    snapshot(BASE_NS + secs * 1_000_000_000, host, &paths, &tags),
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn policy_matches_the_reference_model(rules in rules(), all in snapshots()) {
        let policy = match rules.policy() {
            Ok(p) => p,
            Err(e) => {
                prop_assert!(rules.keeps_nothing(), "refused a policy with rules: {e}");
                return Ok(());
            }
        };
        prop_assert!(!rules.keeps_nothing(), "a policy keeping nothing was accepted");
        // The model's grouping: by the chosen fields, paths and tags as sets.
        let mut groups: BTreeMap<String, Vec<(String, Snapshot)>> = BTreeMap::new();
        for (id, s) in &all {
            let mut paths = s.paths.clone();
            paths.sort();
            let mut tags = s.tags.clone();
            tags.sort();
            let key = format!(
                "{:?}",
                (
                    rules.group_by.0.then(|| s.host.clone()),
                    rules.group_by.1.then_some(paths),
                    rules.group_by.2.then_some(tags)
                )
            );
            groups.entry(key).or_default().push((id.clone(), s.clone()));
        }
        let mut expected = BTreeSet::new();
        for list in groups.values_mut() {
            list.sort_by(|a, b| b.1.time_ns.cmp(&a.1.time_ns).then(b.0.cmp(&a.0)));
            for i in model(list, &rules) {
                expected.insert(list[i].0.clone());
            }
        }
        let decided = apply_policy(&all, &policy);
        prop_assert_eq!(decided.len(), groups.len());
        let mut kept = BTreeSet::new();
        let mut seen = 0;
        for group in &decided {
            for d in &group.decisions {
                seen += 1;
                prop_assert!(!d.reasons.is_empty(), "{} has no reason", d.id);
                if d.keep {
                    kept.insert(d.id.clone());
                }
            }
        }
        prop_assert_eq!(seen, all.len());
        prop_assert_eq!(kept, expected);
    }
}

#[test]
fn reasons_name_the_rules() {
    let day = 86_400 * 1_000_000_000i64;
    let all: Vec<_> = (0..5)
        .map(|i| {
            let tags: &[&str] = if i == 0 { &["keep"] } else { &[] };
            (
                format!("{i:032x}"),
                snapshot(BASE_NS + i * day, "web1", &["/srv"], tags),
            )
        })
        .collect();
    let policy = RetentionPolicy::builder()
        .with_keep_last(2)
        .with_keep_tag("keep")
        .build()
        .unwrap();
    let groups = apply_policy(&all, &policy);
    assert_eq!(groups.len(), 1);
    let reasons: Vec<_> = groups[0]
        .decisions
        .iter()
        .map(|d| {
            (
                d.id.trim_start_matches('0').to_string(),
                d.keep,
                d.reasons.join("; "),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("4".into(), true, "last".into()),
            ("3".into(), true, "last".into()),
            (
                "2".into(),
                false,
                "not among the last 2; has none of the tags keep".into()
            ),
            (
                "1".into(),
                false,
                "not among the last 2; has none of the tags keep".into()
            ),
            ("".into(), true, "tag keep".into()),
        ]
    );
}

#[test]
fn empty_policy_and_bad_input_are_refused() {
    let err = RetentionPolicy::builder().build().unwrap_err().to_string();
    assert!(err.contains("keeps nothing"), "{err}");
    let err = RetentionPolicy::builder()
        .with_keep_daily(0)
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("keeps nothing"), "{err}");
    let err = "host,size".parse::<GroupBy>().unwrap_err().to_string();
    assert!(err.contains("\"size\""), "{err}");
    assert_eq!(
        "host,tags".parse::<GroupBy>().unwrap(),
        GroupBy::new(true, false, true)
    );
}

#[tokio::test]
async fn forget_deletes_only_snapshots_and_dry_run_nothing() {
    let repo = memory_repository().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), b"content").unwrap();
    for tag in ["one", "two", "three"] {
        let options = BackupOptions::builder([dir.path()])
            .with_tag(tag)
            .build()
            .unwrap();
        backup_core::backup(repo.clone(), options, Arc::new(NoProgress))
            .await
            .unwrap();
    }
    let before = snapshot_ids(&repo).await;
    assert_eq!(before.len(), 3);
    let packs_before = repo.packs_size().await.unwrap();
    let policy = RetentionPolicy::builder()
        .with_keep_last(1)
        .with_keep_tag("one")
        .build()
        .unwrap();

    let planned = repo.forget(&policy, true).await.unwrap();
    assert_eq!(planned[0].removed().count(), 1);
    assert_eq!(
        snapshot_ids(&repo).await,
        before,
        "a dry run deleted something"
    );

    let done = repo.forget(&policy, false).await.unwrap();
    let removed: Vec<_> = done[0].removed().map(|d| d.id.clone()).collect();
    let after = snapshot_ids(&repo).await;
    assert_eq!(after.len(), 2);
    assert!(!after.contains(&removed[0]));
    let tags: BTreeSet<_> = repo
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .flat_map(|(_, s)| s.tags)
        .collect();
    assert_eq!(tags, BTreeSet::from(["one".into(), "three".into()]));
    assert_eq!(
        repo.packs_size().await.unwrap(),
        packs_before,
        "data was touched"
    );
    // A rerun finds nothing more to remove.
    let again = repo.forget(&policy, false).await.unwrap();
    assert_eq!(again[0].removed().count(), 0);
}

#[test]
fn only_the_selected_snapshots_are_decided() {
    let all = vec![
        (
            "a".repeat(32),
            snapshot(BASE_NS, "web1", &["/srv", "/etc"], &["nightly"]),
        ),
        (
            "b".repeat(32),
            snapshot(BASE_NS + 1, "web2", &["/srv"], &["nightly"]),
        ),
        (
            "c".repeat(32),
            snapshot(BASE_NS + 2, "web1", &["/srv"], &[]),
        ),
        (
            "d".repeat(32),
            snapshot(BASE_NS + 3, "web1", &["/etc"], &["nightly"]),
        ),
    ];
    let decided = |policy: RetentionPolicy| -> Vec<char> {
        let mut ids: Vec<char> = apply_policy(&all, &policy)
            .iter()
            .flat_map(|g| g.decisions.iter().map(|d| d.id.chars().next().unwrap()))
            .collect();
        ids.sort();
        ids
    };
    let keep = || RetentionPolicy::builder().with_keep_last(1);
    assert_eq!(
        decided(keep().with_only_host("web1").build().unwrap()),
        ['a', 'c', 'd']
    );
    assert_eq!(
        decided(keep().with_only_tag("nightly").build().unwrap()),
        ['a', 'b', 'd']
    );
    assert_eq!(
        decided(keep().with_only_path("/srv").build().unwrap()),
        ['a', 'b', 'c']
    );
    let both = keep()
        .with_only_host("web1")
        .with_only_path("/srv")
        .with_only_path("/etc");
    assert_eq!(decided(both.build().unwrap()), ['a']);
}
