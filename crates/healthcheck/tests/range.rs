//! Nagios ranges against Table 3 ("Example ranges") of the Monitoring Plugins development
//! guidelines (https://www.monitoring-plugins.org/doc/guidelines.html#THRESHOLDFORMAT):
//!
//! | Range definition | Generate an alert if x... |
//! | `10`     | < 0 or > 10, (outside the range of {0 .. 10}) |
//! | `10:`    | < 10, (outside {10 .. ∞}) |
//! | `~:10`   | > 10, (outside the range of {-∞ .. 10}) |
//! | `10:20`  | < 10 or > 20, (outside the range of {10 .. 20}) |
//! | `@10:20` | ≥ 10 and ≤ 20, (inside the range of {10 .. 20}) |

use healthcheck::{Range, Status, Thresholds};

/// (range, values that alert, values that do not), written from the table above.
const TABLE: &[(&str, &[f64], &[f64])] = &[
    (
        "10",
        &[-0.001, -5.0, 10.001, 11.0, 1e9],
        &[0.0, 0.5, 5.0, 10.0],
    ),
    ("10:", &[9.999, 0.0, -1.0, -1e9], &[10.0, 10.5, 1e9]),
    ("~:10", &[10.001, 11.0, 1e9], &[10.0, 0.0, -1.0, -1e9]),
    (
        "10:20",
        &[9.999, 20.001, 0.0, -3.0, 100.0],
        &[10.0, 15.0, 20.0],
    ),
    ("@10:20", &[10.0, 15.0, 20.0], &[9.999, 20.001, 0.0, 100.0]),
];

#[test]
fn guidelines_table() {
    for (text, alerting, quiet) in TABLE {
        let range = Range::parse(text).unwrap();
        for v in *alerting {
            assert!(range.alerts(*v), "`{text}` must alert for {v}");
        }
        for v in *quiet {
            assert!(!range.alerts(*v), "`{text}` must not alert for {v}");
        }
    }
}

#[test]
fn display_gives_back_the_range() {
    for text in [
        "10", "10:", "~:10", "10:20", "@10:20", "@~:0.5", "-5:-1", "0.25",
    ] {
        assert_eq!(Range::parse(text).unwrap().to_string(), text);
    }
}

#[test]
fn more_forms_from_the_guidelines() {
    // "start and : is not required if start=0"; "~" is negative infinity.
    assert_eq!(Range::parse(":10").unwrap(), Range::parse("10").unwrap());
    let r = Range::parse("@~:0").unwrap();
    assert!(r.alerts(-1.0) && r.alerts(0.0) && !r.alerts(0.1));
    // NaN is never inside a range: it alerts, so a broken metric is not silently OK.
    assert!(Range::parse("10").unwrap().alerts(f64::NAN));
}

#[test]
fn bad_ranges_are_named() {
    for (text, needle) in [
        ("", "empty"),
        ("@", "empty"),
        ("20:10", "start is greater than end"),
        ("abc", "`abc` is not a number"),
        ("1:x", "`x` is not a number"),
        ("~:inf", "not a finite number"),
        ("1:2:3", "not a number"),
    ] {
        let e = Range::parse(text).unwrap_err().to_string();
        assert!(e.contains(needle), "`{text}`: {e}");
        assert!(
            e.contains(&format!("`{text}`")),
            "the error names the range: {e}"
        );
    }
}

#[test]
fn critical_wins_over_warning() {
    // Disk free percent: warn below 20, critical below 10.
    let t = Thresholds::parse(Some("20:"), Some("10:")).unwrap();
    assert_eq!(t.status(50.0), Status::Ok);
    assert_eq!(t.status(20.0), Status::Ok);
    assert_eq!(t.status(15.0), Status::Warning);
    assert_eq!(t.status(10.0), Status::Warning);
    assert_eq!(t.status(9.0), Status::Critical);
    assert_eq!(Thresholds::default().status(-1e9), Status::Ok);
}
