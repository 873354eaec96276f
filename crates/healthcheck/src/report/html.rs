//! A self-contained HTML page: state at a glance, the last runs as small inline SVG charts.
//! No script, no external asset; a Content-Security-Policy forbids loading any.

use std::fmt::Write as _;

use crate::monitor::{CheckResult, HistoryPoint, Report};
use crate::report::{format_value, one_line};
use crate::status::Status;

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in one_line(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn colour(status: Status) -> &'static str {
    match status {
        Status::Ok => "#2e9e50",
        Status::Warning => "#e0a100",
        Status::Critical => "#d33a2c",
        Status::Unknown => "#8a56c2",
    }
}

const WIDTH: f64 = 240.0;

/// One bar per run, coloured by that run's state.
fn state_strip(history: &[HistoryPoint]) -> String {
    let n = history.len().max(1) as f64;
    let w = WIDTH / n;
    let mut svg = format!(
        "<svg class=\"strip\" viewBox=\"0 0 {WIDTH} 14\" width=\"{WIDTH}\" height=\"14\" role=\"img\" aria-label=\"state of the last {} runs\">",
        history.len()
    );
    for (i, p) in history.iter().enumerate() {
        let _ = write!(
            svg,
            "<rect x=\"{:.2}\" y=\"0\" width=\"{:.2}\" height=\"14\" fill=\"{}\"><title>{}</title></rect>",
            i as f64 * w,
            (w - 1.0).max(0.5),
            colour(p.status),
            p.status
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A line of the primary value (or the run time when there is none) over the last runs.
fn line_chart(c: &CheckResult) -> String {
    let (label, values): (&str, Vec<f64>) = if c.history.iter().any(|p| p.value.is_some()) {
        (
            c.metrics.first().map_or("value", |m| m.metric.name),
            c.history
                .iter()
                .map(|p| p.value.unwrap_or(f64::NAN))
                .collect(),
        )
    } else {
        (
            "duration_ms",
            c.history.iter().map(|p| p.duration * 1e3).collect(),
        )
    };
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (min, max) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let height = 40.0;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
        escape(label)
    );
    if !finite.is_empty() {
        let span = if max > min { max - min } else { 1.0 };
        let step = if values.len() > 1 {
            WIDTH / (values.len() - 1) as f64
        } else {
            0.0
        };
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| {
                let x = if values.len() > 1 {
                    i as f64 * step
                } else {
                    WIDTH / 2.0
                };
                let y = height - 4.0 - (v - min) / span * (height - 8.0);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"#3b6ea8\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
        if let Some(last) = points.last() {
            let (x, y) = last.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(
                svg,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"#3b6ea8\"/>"
            );
        }
    }
    let _ = write!(
        svg,
        "<title>{} over the last {} runs: min {} max {}</title></svg>",
        escape(label),
        values.len(),
        if finite.is_empty() {
            "-".into()
        } else {
            format_value(min)
        },
        if finite.is_empty() {
            "-".into()
        } else {
            format_value(max)
        }
    );
    svg
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}\
header{padding:16px 24px;color:#fff}header h1{margin:0;font-size:22px}header p{margin:4px 0 0}\
.tiles{display:flex;flex-wrap:wrap;gap:6px;padding:12px 24px}\
.tile{padding:6px 10px;border-radius:4px;color:#fff;font-weight:600;font-size:13px}\
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:12px;padding:0 24px 24px}\
.card{background:#fff;border-radius:6px;padding:12px;border-left:6px solid #ccc;box-shadow:0 1px 2px #0002}\
.card h2{font-size:15px;margin:0 0 2px}.kind{color:#667;font-weight:400;font-size:12px}\
.state{font-weight:700}.msg{margin:4px 0 8px;word-break:break-word}\
table{border-collapse:collapse;font-size:12px;margin-top:6px}td{padding:1px 8px 1px 0}\
svg{display:block;margin-top:4px}.label{font-size:11px;color:#667}";

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix seconds (days to civil date as in Howard Hinnant's
/// `civil_from_days`).
pub(crate) fn utc_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The report as one HTML page (inline CSS and SVG; no script).
pub fn html(report: &Report) -> String {
    let mut out = String::new();
    let counts = [
        Status::Critical,
        Status::Unknown,
        Status::Warning,
        Status::Ok,
    ]
    .map(|s| (s, report.checks.iter().filter(|c| c.status == s).count()));
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{} {} health</title><style>{STYLE}</style></head><body>\
<header style=\"background:{}\"><h1>{}: {}</h1><p>{} checks in {:.0} ms",
        report.status,
        escape(&report.host),
        colour(report.status),
        escape(&report.host),
        report.status,
        report.checks.len(),
        report.duration * 1e3,
    );
    for (s, n) in counts {
        if n > 0 {
            let _ = write!(out, " · {n} {s}");
        }
    }
    let _ = write!(
        out,
        " · run at {}</p></header><div class=\"tiles\">",
        utc_time(report.started)
    );
    for c in &report.checks {
        let _ = write!(
            out,
            "<span class=\"tile\" style=\"background:{}\" title=\"{}\">{}</span>",
            colour(c.status),
            escape(&c.message),
            escape(&c.name)
        );
    }
    out.push_str("</div><main>");
    for c in &report.checks {
        let _ = write!(
            out,
            "<section class=\"card\" style=\"border-left-color:{}\"><h2>{} <span class=\"kind\">{}</span></h2>\
<div class=\"state\" style=\"color:{}\">{} <span class=\"kind\">({})</span></div><p class=\"msg\">{}</p>",
            colour(c.status),
            escape(&c.name),
            c.kind,
            colour(c.status),
            c.status,
            c.reason,
            escape(&c.message)
        );
        let _ = write!(
            out,
            "<div class=\"label\">last {} runs</div>{}{}",
            c.history.len(),
            state_strip(&c.history),
            line_chart(c)
        );
        if !c.metrics.is_empty() {
            out.push_str("<table>");
            for m in &c.metrics {
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td class=\"label\">{}{}</td></tr>",
                    m.metric.name,
                    format_value(m.metric.value),
                    m.warn
                        .as_deref()
                        .map(|w| format!("warn {} ", escape(w)))
                        .unwrap_or_default(),
                    m.crit
                        .as_deref()
                        .map(|w| format!("crit {}", escape(w)))
                        .unwrap_or_default()
                );
            }
            out.push_str("</table>");
        }
        out.push_str("</section>");
    }
    out.push_str("</main></body></html>\n");
    out
}
