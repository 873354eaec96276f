//! Conformance suites: every [`Check`] and every [`AlertSink`] runs these (plain async functions
//! over trait objects, like object_store's `integration` module). Each panics with a message
//! naming the broken rule.

use std::time::{Duration, Instant};

use crate::alert::{Alert, AlertSink};
use crate::check::Check;
use crate::status::{Reason, Status};

fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Runs `check` twice (it must be reusable) and checks the rules every check keeps:
/// it finishes within `within`; its kind and metric names are snake_case (they become
/// Prometheus labels); metric names are unique and values finite; an OK observation has
/// reason `ok`; the primary metric, when declared, is measured whenever the target answered
/// OK; and a run abandoned half-way (as a timeout does) leaves the check usable.
pub async fn check_suite(check: &dyn Check, within: Duration) {
    assert!(
        valid_metric_name(check.kind()),
        "kind `{}` is not snake_case",
        check.kind()
    );
    if let Some(p) = check.primary_metric() {
        assert!(
            valid_metric_name(p),
            "primary metric `{p}` is not snake_case"
        );
    }
    let mut first = None;
    for round in 0..2 {
        let begun = Instant::now();
        let observation = tokio::time::timeout(within, check.run())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} check did not finish within {within:?} (round {round})",
                    check.kind()
                )
            });
        assert!(
            begun.elapsed() <= within,
            "{} check took {:?}",
            check.kind(),
            begun.elapsed()
        );
        assert!(
            !observation.message.is_empty(),
            "{} check gave no message",
            check.kind()
        );
        let mut names: Vec<&str> = observation.metrics.iter().map(|m| m.name).collect();
        for m in &observation.metrics {
            assert!(
                valid_metric_name(m.name),
                "metric `{}` is not snake_case",
                m.name
            );
            assert!(m.value.is_finite(), "metric `{}` is {}", m.name, m.value);
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names.len(),
            observation.metrics.len(),
            "{} check repeats a metric",
            check.kind()
        );
        if observation.status == Status::Ok {
            assert_eq!(
                observation.reason,
                Reason::Ok,
                "an OK observation must say reason ok"
            );
            if let Some(p) = check.primary_metric() {
                assert!(
                    observation.metric(p).is_some(),
                    "{} check answered OK without its primary metric `{p}`",
                    check.kind()
                );
            }
        } else {
            assert_ne!(
                observation.reason,
                Reason::Ok,
                "a {} observation needs a reason",
                observation.status
            );
        }
        match &first {
            None => first = Some((observation.status, observation.reason)),
            Some((status, reason)) => {
                // Against the same target the verdict's kind does not change between runs
                // (values may).
                assert_eq!(
                    (observation.status, observation.reason),
                    (*status, *reason),
                    "{} check is not repeatable",
                    check.kind()
                );
            }
        }
    }
    // Abandon a run early, as the monitor's timeout would, then run again.
    let _ = tokio::time::timeout(Duration::from_micros(1), check.run()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = tokio::time::timeout(within, check.run())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} check did not finish after an abandoned run",
                check.kind()
            )
        });
    if let Some((status, reason)) = first {
        assert_eq!(
            (again.status, again.reason),
            (status, reason),
            "{} check changed verdict after an abandoned run",
            check.kind()
        );
    }
}

/// A sample alert with text that breaks naive sinks: quotes, a newline, shell metacharacters,
/// non-ASCII.
pub fn hostile_alert() -> Alert {
    Alert {
        host: "web1".into(),
        check: "site-cert".into(),
        kind: "tls",
        previous: Some(Status::Ok),
        status: Status::Critical,
        reason: Reason::CertExpired,
        message: "expired \"3\" days ago; $(touch /tmp/pwned) `id` | rm -rf ~\nsecond line é"
            .into(),
        at: 1_700_000_000,
    }
}

/// Checks that `sink` delivers alerts intact: `received` returns what the far side got (as the
/// JSON the sink sent, or the alerts it recorded), and must hold each sent alert unchanged and in
/// order, hostile text included.
pub async fn alert_sink_suite<F>(sink: &dyn AlertSink, received: F)
where
    F: Fn() -> Vec<serde_json::Value>,
{
    assert!(!sink.name().is_empty(), "a sink needs a name");
    let recovered = Alert {
        previous: Some(Status::Critical),
        status: Status::Ok,
        reason: Reason::Ok,
        message: "certificate valid for 89 more days".into(),
        ..hostile_alert()
    };
    let sent = [hostile_alert(), recovered];
    for alert in &sent {
        sink.send(alert)
            .await
            .unwrap_or_else(|e| panic!("{} sink failed to deliver: {e}", sink.name()));
    }
    let got = received();
    let want: Vec<serde_json::Value> = sent
        .iter()
        .map(|a| serde_json::to_value(a).expect("an alert serializes"))
        .collect();
    assert_eq!(
        got,
        want,
        "{} sink did not deliver the alerts intact and in order",
        sink.name()
    );
}
