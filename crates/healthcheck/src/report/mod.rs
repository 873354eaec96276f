//! Reports of a [`Report`]: text for a terminal, JSON, Prometheus text 0.0.4, OpenMetrics, Nagios
//! plugin output and a self-contained HTML page.

mod html;
mod prometheus;

pub use html::html;
pub use prometheus::{openmetrics, prometheus};

use std::fmt::Write as _;

use crate::monitor::Report;
use crate::status::Status;

/// Formats a number for people and perfdata: integers without a point, others with up to
/// six significant decimals, never in exponent notation.
pub fn format_value(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "NaN".into()
        } else if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let text = format!("{v:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Bytes in binary units (`12.3 GiB`).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Aligned text, one check a line; `colour` adds ANSI colours to the states (for a terminal).
pub fn text(report: &Report, colour: bool) -> String {
    let name_width = report
        .checks
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(5);
    let kind_width = report
        .checks
        .iter()
        .map(|c| c.kind.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let paint = |status: Status| {
        let label = format!("{:<8}", status.as_str());
        if !colour {
            return label;
        }
        let code = match status {
            Status::Ok => "32",
            Status::Warning => "33",
            Status::Critical => "1;31",
            Status::Unknown => "35",
        };
        format!("\x1b[{code}m{label}\x1b[0m")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}: {} checks in {:.0} ms",
        paint(report.status),
        report.host,
        report.checks.len(),
        report.duration * 1e3
    );
    for c in &report.checks {
        let _ = writeln!(
            out,
            "{} {:<name_width$}  {:<kind_width$}  {:>8.1} ms  {}",
            paint(c.status),
            c.name,
            c.kind,
            c.duration * 1e3,
            one_line(&c.message)
        );
    }
    out
}

/// Control characters (a hostile banner, a newline in a body) never reach a terminal or a
/// one-line format.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The report as pretty JSON (the serde form of [`Report`]).
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Nagios plugin output: one line (`STATUS - summary | perfdata`) and the exit code 0-3.
///
/// Perfdata labels are `check.metric`, quoted when needed; values carry their unit of measure,
/// then the warning and critical ranges.
pub fn nagios(report: &Report) -> (String, i32) {
    let bad: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .map(|c| format!("{} {}: {}", c.name, c.status, one_line(&c.message)))
        .collect();
    let summary = if bad.is_empty() {
        format!("{} checks OK", report.checks.len())
    } else {
        format!(
            "{} of {} checks not OK: {}",
            bad.len(),
            report.checks.len(),
            bad.join("; ")
        )
    };
    let mut perf = Vec::new();
    for c in &report.checks {
        for m in &c.metrics {
            let label = format!("{}.{}", c.name, m.metric.name);
            let label = if label.contains([' ', '=', '\'']) {
                format!("'{}'", label.replace('\'', "''"))
            } else {
                label
            };
            let mut item = format!(
                "{label}={}{}",
                format_value(m.metric.value),
                m.metric.unit.nagios_uom()
            );
            item.push(';');
            item.push_str(m.warn.as_deref().unwrap_or(""));
            item.push(';');
            item.push_str(m.crit.as_deref().unwrap_or(""));
            perf.push(item.trim_end_matches(';').to_owned());
        }
    }
    // `|` separates perfdata; a message must not contain one.
    let summary = summary.replace('|', "/");
    let line = if perf.is_empty() {
        format!("{} - {summary}", report.status)
    } else {
        format!("{} - {summary} | {}", report.status, perf.join(" "))
    };
    (line, report.status.exit_code())
}
