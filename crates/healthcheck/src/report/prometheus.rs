//! Prometheus text exposition format 0.0.4 and OpenMetrics 1.0.

use std::fmt::Write as _;

use crate::monitor::Report;
use crate::report::format_value;

/// Escapes a label value: backslash, double quote and newline.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn families(report: &Report, openmetrics: bool) -> String {
    let mut out = String::new();
    let mut family = |name: &str, help: &str, samples: &mut dyn Iterator<Item = (String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {}", format_value(value));
        }
    };
    let base = |c: &crate::monitor::CheckResult| {
        format!(
            "host=\"{}\",check=\"{}\",kind=\"{}\"",
            label(&report.host),
            label(&c.name),
            c.kind
        )
    };
    family(
        "healthcheck_status",
        "Reported state of the check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        &mut report.checks.iter().map(|c| {
            (
                format!("{},reason=\"{}\"", base(c), c.reason),
                f64::from(c.status.exit_code() as u8),
            )
        }),
    );
    family(
        "healthcheck_up",
        "1 when the check's reported state is OK.",
        &mut report
            .checks
            .iter()
            .map(|c| (base(c), f64::from(u8::from(c.status == crate::Status::Ok)))),
    );
    family(
        "healthcheck_check_duration_seconds",
        "Wall time of the check's last run.",
        &mut report.checks.iter().map(|c| (base(c), c.duration)),
    );
    family(
        "healthcheck_value",
        "A value the check measured; the metric label names it and unit its unit.",
        &mut report.checks.iter().flat_map(|c| {
            c.metrics.iter().map(move |m| {
                (
                    format!(
                        "{},metric=\"{}\",unit=\"{}\"",
                        base(c),
                        m.metric.name,
                        serde_json::to_value(m.metric.unit)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    ),
                    m.metric.value,
                )
            })
        }),
    );
    family(
        "healthcheck_report_duration_seconds",
        "Wall time of the whole report.",
        &mut std::iter::once((format!("host=\"{}\"", label(&report.host)), report.duration)),
    );
    if openmetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// The report in the Prometheus text exposition format 0.0.4
/// (`Content-Type: text/plain; version=0.0.4`).
pub fn prometheus(report: &Report) -> String {
    families(report, false)
}

/// The report in OpenMetrics 1.0 text (`Content-Type: application/openmetrics-text;
/// version=1.0.0`), ending with `# EOF`.
pub fn openmetrics(report: &Report) -> String {
    families(report, true)
}
