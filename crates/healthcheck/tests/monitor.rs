//! The monitor: timeouts per check, thresholds, flap damping, alerts only on a change of state.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use healthcheck::{
    Check, CheckEntry, FlapDamping, MemorySink, Monitor, Observation, Reason, Status, Thresholds,
    Unit,
};

/// Reports the values of a script, one per run (the last one repeats).
struct Scripted {
    values: Vec<f64>,
    next: AtomicUsize,
}

impl Scripted {
    fn new(values: &[f64]) -> Arc<Scripted> {
        Arc::new(Scripted {
            values: values.to_vec(),
            next: AtomicUsize::new(0),
        })
    }
}

#[async_trait::async_trait]
impl Check for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }
    fn primary_metric(&self) -> Option<&'static str> {
        Some("value")
    }
    async fn run(&self) -> Observation {
        let i = self
            .next
            .fetch_add(1, Ordering::SeqCst)
            .min(self.values.len() - 1);
        Observation::ok("scripted").with_metric("value", self.values[i], Unit::Number)
    }
}

/// Never finishes.
struct Hangs;

#[async_trait::async_trait]
impl Check for Hangs {
    fn kind(&self) -> &'static str {
        "hangs"
    }
    async fn run(&self) -> Observation {
        std::future::pending().await
    }
}

fn entry(name: &str, check: Arc<dyn Check>, flap: FlapDamping) -> CheckEntry {
    CheckEntry::builder(name, check)
        .with_thresholds(Thresholds::parse(Some("10"), Some("20")).unwrap())
        .with_flap_damping(flap)
        .with_timeout(Duration::from_millis(200))
        .build()
        .unwrap()
}

#[tokio::test]
async fn alerts_only_on_change_of_state() {
    let sink = Arc::new(MemorySink::new());
    let monitor = Monitor::builder()
        .with_host("h")
        .with_check(entry(
            "v",
            Scripted::new(&[1.0, 2.0, 15.0, 16.0, 30.0, 30.0, 3.0]),
            FlapDamping::none(),
        ))
        .with_sink(sink.clone())
        .build()
        .unwrap();
    let mut states = Vec::new();
    for _ in 0..7 {
        let r = monitor.run().await;
        states.push(r.checks[0].status);
    }
    use Status::*;
    assert_eq!(states, [Ok, Ok, Warning, Warning, Critical, Critical, Ok]);
    let alerts: Vec<(Option<Status>, Status)> = sink
        .alerts()
        .iter()
        .map(|a| (a.previous, a.status))
        .collect();
    assert_eq!(
        alerts,
        [
            (Some(Ok), Warning),
            (Some(Warning), Critical),
            (Some(Critical), Ok)
        ]
    );
    let a = &sink.alerts()[0];
    assert_eq!(
        (a.check.as_str(), a.reason, a.host.as_str()),
        ("v", Reason::Threshold, "h")
    );
    assert!(a.message.contains("value = 15 is WARNING"), "{}", a.message);
}

#[tokio::test]
async fn first_run_alerts_only_when_not_ok() {
    let sink = Arc::new(MemorySink::new());
    let monitor = Monitor::builder()
        .with_check(entry("bad", Scripted::new(&[50.0]), FlapDamping::none()))
        .with_check(entry("good", Scripted::new(&[1.0]), FlapDamping::none()))
        .with_sink(sink.clone())
        .build()
        .unwrap();
    monitor.run().await;
    monitor.run().await;
    let alerts = sink.alerts();
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        (
            alerts[0].check.as_str(),
            alerts[0].previous,
            alerts[0].status
        ),
        ("bad", None, Status::Critical)
    );
}

#[tokio::test]
async fn flap_damping_needs_n_of_m() {
    let sink = Arc::new(MemorySink::new());
    // 2 of the last 3 runs: a single bad run is absorbed, two bad runs in three switch.
    let values = [1.0, 50.0, 1.0, 1.0, 50.0, 1.0, 50.0, 50.0, 1.0, 1.0];
    let monitor = Monitor::builder()
        .with_check(entry(
            "v",
            Scripted::new(&values),
            FlapDamping::new(2, 3).unwrap(),
        ))
        .with_sink(sink.clone())
        .build()
        .unwrap();
    let mut reported = Vec::new();
    let mut raw = Vec::new();
    for _ in 0..values.len() {
        let r = monitor.run().await;
        reported.push(r.checks[0].status);
        raw.push(r.checks[0].raw_status);
    }
    use Status::*;
    assert_eq!(
        raw,
        [
            Ok, Critical, Ok, Ok, Critical, Ok, Critical, Critical, Ok, Ok
        ]
    );
    assert_eq!(
        reported,
        [Ok, Ok, Ok, Ok, Ok, Ok, Critical, Critical, Critical, Ok]
    );
    assert_eq!(sink.alerts().len(), 2);
    assert!(FlapDamping::new(0, 3).is_err());
    assert!(FlapDamping::new(4, 3).is_err());
}

#[tokio::test]
async fn a_hung_check_times_out_without_holding_up_the_others() {
    let mut builder = Monitor::builder();
    for i in 0..19 {
        builder = builder.with_check(entry(
            &format!("c{i}"),
            Scripted::new(&[1.0]),
            FlapDamping::none(),
        ));
    }
    let monitor = builder
        .with_check(
            CheckEntry::builder("stuck", Arc::new(Hangs))
                .with_timeout(Duration::from_millis(300))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let begun = Instant::now();
    let report = monitor.run().await;
    let took = begun.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let stuck = report.checks.iter().find(|c| c.name == "stuck").unwrap();
    assert_eq!(
        (stuck.status, stuck.reason),
        (Status::Critical, Reason::Timeout)
    );
    assert!(stuck.message.contains("300ms"), "{}", stuck.message);
    assert_eq!(
        report
            .checks
            .iter()
            .filter(|c| c.status == Status::Ok)
            .count(),
        19
    );
    assert_eq!(report.status, Status::Critical);
}

#[tokio::test]
async fn history_is_bounded_and_ordered() {
    let values: Vec<f64> = (0..100).map(f64::from).collect();
    let monitor = Monitor::builder()
        .with_check(
            CheckEntry::builder("v", Scripted::new(&values) as Arc<dyn Check>)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut last = None;
    for _ in 0..100 {
        last = Some(monitor.run().await);
    }
    let history = &last.unwrap().checks[0].history;
    assert_eq!(history.len(), healthcheck::HISTORY_LEN);
    assert_eq!(history.first().unwrap().value, Some(40.0));
    assert_eq!(history.last().unwrap().value, Some(99.0));
}

#[test]
fn builders_reject_bad_entries() {
    let hangs: Arc<dyn Check> = Arc::new(Hangs);
    let e = CheckEntry::builder("no metric", hangs.clone())
        .with_thresholds(Thresholds::parse(Some("1"), None).unwrap())
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("`no metric`"), "{e}");
    let e = CheckEntry::builder("x", hangs.clone())
        .with_thresholds(Thresholds::parse(Some("1"), None).unwrap())
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("no primary metric"), "{e}");
    let e = CheckEntry::builder("x", hangs.clone())
        .with_timeout(Duration::ZERO)
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("timeout"), "{e}");
    let one = CheckEntry::builder("same", hangs.clone()).build().unwrap();
    let e = Monitor::builder()
        .with_check(one.clone())
        .with_check(one)
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("two checks are named `same`"), "{e}");
}
