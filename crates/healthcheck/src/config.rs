//! The TOML configuration: checks, thresholds, damping, alert sinks and the status server.
//!
//! ```toml
//! host = "web1"            # optional; default /etc/hostname
//! timeout = "2s"           # default timeout of each check
//! flap = { needed = 2, window = 3 }   # default damping: 2 of the last 3 runs
//!
//! [serve]
//! listen = "127.0.0.1:9108"
//! interval = "30s"
//!
//! [[check]]
//! name = "root-disk"
//! kind = "disk"            # disk memory swap load tcp http tls process nginx php_fpm mysql file
//! path = "/"
//! warn = "10:"             # Nagios ranges on the kind's primary metric
//! crit = "5:"
//!
//! [[check]]
//! name = "site-cert"
//! kind = "tls"
//! address = "example.org:443"
//! warn = "14:"
//! crit = "3:"
//!
//! [[alert]]
//! kind = "webhook"
//! url = "https://hooks.example.org/health"
//!
//! [[alert]]
//! kind = "command"
//! argv = ["/usr/local/bin/page-oncall", "--team", "ops"]
//! ```
//!
//! Every error names the line and the key at fault.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use serde::Deserialize;
use toml::Spanned;

use crate::alert::{AlertSink, CommandSink, WebhookSink};
use crate::check::Check;
use crate::checks::{
    DiskCheck, FileFreshnessCheck, HttpCheck, LoadCheck, MemoryCheck, MysqlCheck, NginxStatusCheck,
    PhpFpmStatusCheck, ProcessCheck, SwapCheck, TcpCheck, TlsCheck,
};
use crate::error::{Error, Result};
use crate::monitor::{CheckEntry, FlapDamping, Monitor};
use crate::range::Thresholds;
use crate::tls::Roots;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlap {
    needed: usize,
    window: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServe {
    listen: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    host: Option<String>,
    timeout: Option<Spanned<String>>,
    flap: Option<Spanned<RawFlap>>,
    serve: Option<RawServe>,
    #[serde(default)]
    check: Vec<Spanned<RawCheck>>,
    #[serde(default)]
    alert: Vec<Spanned<RawAlert>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    name: Spanned<String>,
    kind: Spanned<String>,
    timeout: Option<Spanned<String>>,
    warn: Option<Spanned<String>>,
    crit: Option<Spanned<String>>,
    metric: Option<Spanned<String>>,
    flap: Option<Spanned<RawFlap>>,
    path: Option<Spanned<PathBuf>>,
    read_only_ok: Option<Spanned<bool>>,
    address: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    expect_status: Option<Spanned<Vec<u16>>>,
    body_contains: Option<Spanned<String>>,
    server_name: Option<Spanned<String>>,
    ca_file: Option<Spanned<PathBuf>>,
    process: Option<Spanned<String>>,
    pidfile: Option<Spanned<PathBuf>>,
    user: Option<Spanned<String>>,
    password: Option<Spanned<String>>,
    password_env: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlert {
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    attempts: Option<Spanned<u32>>,
    argv: Option<Spanned<Vec<String>>>,
    timeout: Option<Spanned<String>>,
    ca_file: Option<Spanned<PathBuf>>,
}

/// A loaded configuration.
#[derive(Debug)]
#[non_exhaustive]
pub struct Config {
    /// The host name for reports, if set.
    pub host: Option<String>,
    /// The checks, in file order.
    pub checks: Vec<CheckEntry>,
    /// Alert sinks.
    pub sinks: Vec<Arc<dyn AlertSink>>,
    /// Where periodic mode serves `/metrics` and the page (default `127.0.0.1:9108`).
    pub listen: String,
    /// How often periodic mode runs the checks (default 60 s).
    pub interval: Duration,
}

impl Config {
    /// Reads and checks a configuration file. `provider` supplies the TLS algorithms of
    /// certificate checks, https checks and webhooks.
    pub fn load(path: &Path, provider: Arc<CryptoProvider>) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path, provider)
    }

    /// Parses configuration text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path, provider: Arc<CryptoProvider>) -> Result<Config> {
        let err = |message: String| Error::Config {
            path: path.to_owned(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)));
            err(format!("{}{}", line.unwrap_or_default(), e.message()))
        })?;
        let at = |span: std::ops::Range<usize>, key: &str, reason: String| {
            err(format!(
                "line {}: key `{key}`: {reason}",
                line_of(text, span.start)
            ))
        };
        let default_timeout = match &raw.timeout {
            Some(t) => duration(t).map_err(|r| at(t.span(), "timeout", r))?,
            None => Duration::from_secs(5),
        };
        let default_flap = match &raw.flap {
            Some(f) => FlapDamping::new(f.get_ref().needed, f.get_ref().window)
                .map_err(|e| at(f.span(), "flap", reason_of(e)))?,
            None => FlapDamping::none(),
        };
        let mut checks = Vec::new();
        for check in &raw.check {
            let entry = build_check(check.get_ref(), default_timeout, default_flap, &provider)
                .map_err(|(span, key, reason)| at(span.unwrap_or(check.span()), key, reason))?;
            checks.push(entry);
        }
        let mut names: Vec<(&str, usize)> = raw
            .check
            .iter()
            .map(|c| {
                (
                    c.get_ref().name.get_ref().as_str(),
                    c.get_ref().name.span().start,
                )
            })
            .collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(err(format!(
                "line {}: key `name`: a check named `{}` already exists",
                line_of(text, w[1].1.max(w[0].1)),
                w[0].0
            )));
        }
        let mut sinks: Vec<Arc<dyn AlertSink>> = Vec::new();
        for alert in &raw.alert {
            let sink = build_sink(alert.get_ref(), &provider)
                .map_err(|(span, key, reason)| at(span.unwrap_or(alert.span()), key, reason))?;
            sinks.push(sink);
        }
        let (listen, interval) = match &raw.serve {
            Some(s) => {
                let listen = match &s.listen {
                    Some(l) => {
                        l.get_ref().parse::<std::net::SocketAddr>().map_err(|e| {
                            at(l.span(), "serve.listen", format!("`{}`: {e}", l.get_ref()))
                        })?;
                        l.get_ref().clone()
                    }
                    None => "127.0.0.1:9108".to_owned(),
                };
                let interval = match &s.interval {
                    Some(i) => duration(i).map_err(|r| at(i.span(), "serve.interval", r))?,
                    None => Duration::from_secs(60),
                };
                (listen, interval)
            }
            None => ("127.0.0.1:9108".to_owned(), Duration::from_secs(60)),
        };
        Ok(Config {
            host: raw.host,
            checks,
            sinks,
            listen,
            interval,
        })
    }

    /// A monitor running these checks and sending alerts to these sinks.
    pub fn monitor(&self) -> Result<Monitor> {
        let mut builder = Monitor::builder();
        if let Some(host) = &self.host {
            builder = builder.with_host(host.clone());
        }
        for entry in &self.checks {
            builder = builder.with_check(entry.clone());
        }
        for sink in &self.sinks {
            builder = builder.with_sink(sink.clone());
        }
        builder.build()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn reason_of(e: Error) -> String {
    match e {
        Error::InvalidConfig { reason, .. } => reason,
        Error::InvalidRange { range, reason } => format!("`{range}`: {reason}"),
        other => other.to_string(),
    }
}

fn duration(text: &Spanned<String>) -> std::result::Result<Duration, String> {
    let d = humantime::parse_duration(text.get_ref()).map_err(|e| {
        format!(
            "`{}` is not a duration (like 2s, 500ms): {e}",
            text.get_ref()
        )
    })?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

type Span = Option<std::ops::Range<usize>>;
type Failure = (Span, &'static str, String);

fn required<'a, T>(
    value: &'a Option<Spanned<T>>,
    key: &'static str,
    kind: &str,
) -> std::result::Result<&'a T, Failure> {
    value
        .as_ref()
        .map(|v| v.get_ref())
        .ok_or((None, key, format!("is required for kind `{kind}`")))
}

fn roots(ca_file: &Option<Spanned<PathBuf>>) -> std::result::Result<Option<Roots>, Failure> {
    match ca_file {
        Some(f) => Roots::from_pem_file(f.get_ref())
            .map(Some)
            .map_err(|e| (Some(f.span()), "ca_file", reason_of(e))),
        None => Ok(None),
    }
}

fn build_check(
    raw: &RawCheck,
    default_timeout: Duration,
    default_flap: FlapDamping,
    provider: &Arc<CryptoProvider>,
) -> std::result::Result<CheckEntry, Failure> {
    let kind = raw.kind.get_ref().as_str();
    // Keys that only some kinds read; giving one to another kind is a mistake worth naming.
    let specific: [(&'static str, Span, &[&str]); 13] = [
        (
            "path",
            raw.path.as_ref().map(Spanned::span),
            &["disk", "file"],
        ),
        (
            "read_only_ok",
            raw.read_only_ok.as_ref().map(Spanned::span),
            &["disk"],
        ),
        (
            "address",
            raw.address.as_ref().map(Spanned::span),
            &["tcp", "tls", "mysql"],
        ),
        (
            "url",
            raw.url.as_ref().map(Spanned::span),
            &["http", "nginx", "php_fpm"],
        ),
        (
            "expect_status",
            raw.expect_status.as_ref().map(Spanned::span),
            &["http"],
        ),
        (
            "body_contains",
            raw.body_contains.as_ref().map(Spanned::span),
            &["http"],
        ),
        (
            "server_name",
            raw.server_name.as_ref().map(Spanned::span),
            &["tls"],
        ),
        (
            "ca_file",
            raw.ca_file.as_ref().map(Spanned::span),
            &["tls", "http", "nginx", "php_fpm"],
        ),
        (
            "process",
            raw.process.as_ref().map(Spanned::span),
            &["process"],
        ),
        (
            "pidfile",
            raw.pidfile.as_ref().map(Spanned::span),
            &["process"],
        ),
        ("user", raw.user.as_ref().map(Spanned::span), &["mysql"]),
        (
            "password",
            raw.password.as_ref().map(Spanned::span),
            &["mysql"],
        ),
        (
            "password_env",
            raw.password_env.as_ref().map(Spanned::span),
            &["mysql"],
        ),
    ];
    for (key, span, kinds) in &specific {
        if let Some(span) = span
            && !kinds.contains(&kind)
        {
            return Err((
                Some(span.clone()),
                key,
                format!(
                    "does not apply to kind `{kind}` (only {})",
                    kinds.join(", ")
                ),
            ));
        }
    }
    let invalid = |key: &'static str, span: Option<std::ops::Range<usize>>| {
        move |e: Error| (span.clone(), key, reason_of(e))
    };
    let ca = roots(&raw.ca_file)?;
    let url_span = raw.url.as_ref().map(Spanned::span);
    let address_span = raw.address.as_ref().map(Spanned::span);
    let check: Arc<dyn Check> = match kind {
        "disk" => Arc::new(
            DiskCheck::new(required(&raw.path, "path", kind)?.clone())
                .with_read_only_expected(raw.read_only_ok.as_ref().is_some_and(|v| *v.get_ref())),
        ),
        "file" => Arc::new(FileFreshnessCheck::new(
            required(&raw.path, "path", kind)?.clone(),
        )),
        "memory" => Arc::new(MemoryCheck::new()),
        "swap" => Arc::new(SwapCheck::new()),
        "load" => Arc::new(LoadCheck::new()),
        "tcp" => Arc::new(
            TcpCheck::new(required(&raw.address, "address", kind)?)
                .map_err(invalid("address", address_span))?,
        ),
        "http" => {
            let url = required(&raw.url, "url", kind)?;
            let mut b = HttpCheck::builder(url.clone(), provider.clone());
            if let Some(ca) = ca {
                b = b.with_roots(ca);
            }
            if let Some(codes) = &raw.expect_status {
                b = b.with_expect_status(codes.get_ref().iter().copied());
            }
            if let Some(text) = &raw.body_contains {
                b = b.with_body_contains(text.get_ref().clone());
            }
            Arc::new(b.build().map_err(invalid("url", url_span))?)
        }
        "nginx" | "php_fpm" => {
            let url = required(&raw.url, "url", kind)?;
            if kind == "nginx" {
                Arc::new(
                    NginxStatusCheck::new(url, provider.clone(), ca.as_ref())
                        .map_err(invalid("url", url_span))?,
                )
            } else {
                Arc::new(
                    PhpFpmStatusCheck::new(url, provider.clone(), ca.as_ref())
                        .map_err(invalid("url", url_span))?,
                )
            }
        }
        "tls" => {
            let address = required(&raw.address, "address", kind)?;
            let mut b = TlsCheck::builder(address.clone(), provider.clone());
            if let Some(ca) = ca {
                b = b.with_roots(ca);
            }
            if let Some(name) = &raw.server_name {
                b = b.with_server_name(name.get_ref().clone());
            }
            Arc::new(b.build().map_err(invalid("address", address_span))?)
        }
        "process" => match (&raw.process, &raw.pidfile) {
            (Some(name), None) => Arc::new(ProcessCheck::by_name(name.get_ref().clone())),
            (None, Some(file)) => Arc::new(ProcessCheck::by_pidfile(file.get_ref().clone())),
            _ => {
                return Err((
                    None,
                    "process",
                    "give exactly one of `process` (a name) and `pidfile`".into(),
                ));
            }
        },
        "mysql" => {
            let address = required(&raw.address, "address", kind)?;
            let mut check = MysqlCheck::new(address).map_err(invalid("address", address_span))?;
            if let Some(user) = &raw.user {
                let password = match (&raw.password, &raw.password_env) {
                    (Some(p), None) => p.get_ref().clone(),
                    (None, Some(var)) => std::env::var(var.get_ref()).map_err(|_| {
                        (
                            Some(var.span()),
                            "password_env",
                            format!("environment variable `{}` is not set", var.get_ref()),
                        )
                    })?,
                    (None, None) => String::new(),
                    (Some(p), Some(_)) => {
                        return Err((
                            Some(p.span()),
                            "password",
                            "give `password` or `password_env`, not both".into(),
                        ));
                    }
                };
                check = check.with_credentials(user.get_ref().clone(), password);
            }
            Arc::new(check)
        }
        other => {
            return Err((
                Some(raw.kind.span()),
                "kind",
                format!(
                    "unknown kind `{other}` (disk, memory, swap, load, tcp, http, tls, process, nginx, php_fpm, mysql, file)"
                ),
            ));
        }
    };
    let name = raw.name.get_ref();
    crate::monitor::validate_name(name).map_err(invalid("name", Some(raw.name.span())))?;
    let mut entry = CheckEntry::builder(name.clone(), check);
    entry = entry.with_timeout(match &raw.timeout {
        Some(t) => duration(t).map_err(|r| (Some(t.span()), "timeout", r))?,
        None => default_timeout,
    });
    entry = entry.with_flap_damping(match &raw.flap {
        Some(f) => FlapDamping::new(f.get_ref().needed, f.get_ref().window)
            .map_err(invalid("flap", Some(f.span())))?,
        None => default_flap,
    });
    let range = |r: &Option<Spanned<String>>,
                 key: &'static str|
     -> std::result::Result<Option<String>, Failure> {
        match r {
            Some(r) => crate::range::Range::parse(r.get_ref())
                .map(|_| Some(r.get_ref().clone()))
                .map_err(|e| (Some(r.span()), key, reason_of(e))),
            None => Ok(None),
        }
    };
    let warn = range(&raw.warn, "warn")?;
    let crit = range(&raw.crit, "crit")?;
    if warn.is_some() || crit.is_some() {
        let thresholds =
            Thresholds::parse(warn.as_deref(), crit.as_deref()).map_err(invalid("warn", None))?;
        entry = match &raw.metric {
            Some(m) => {
                let known = metric_name(kind, m.get_ref()).ok_or((
                    Some(m.span()),
                    "metric",
                    format!("kind `{kind}` has no metric `{}`", m.get_ref()),
                ))?;
                entry.with_metric_thresholds(known, thresholds)
            }
            None => entry.with_thresholds(thresholds),
        };
    }
    entry
        .build()
        .map_err(invalid("name", Some(raw.name.span())))
}

/// The metrics each kind reports (thresholds may name any of them).
pub fn metrics_of(kind: &str) -> &'static [&'static str] {
    match kind {
        "disk" => &["free_percent", "free_bytes", "inodes_free_percent"],
        "file" => &["age_seconds"],
        "memory" => &["available_percent", "available_bytes"],
        "swap" => &["free_percent", "used_bytes"],
        "load" => &["load1_per_core", "load5_per_core", "load15_per_core"],
        "tcp" => &["connect_seconds"],
        "http" => &["response_seconds", "status_code", "body_bytes"],
        "tls" => &["days_left"],
        "process" => &["processes"],
        "nginx" => &[
            "active_connections",
            "reading",
            "writing",
            "waiting",
            "requests_total",
            "dropped_total",
            "response_seconds",
        ],
        "php_fpm" => &[
            "listen_queue",
            "active_processes",
            "idle_processes",
            "max_children_reached",
            "accepted_total",
            "slow_requests",
            "response_seconds",
        ],
        "mysql" => &["connect_seconds", "server_version", "ping_seconds"],
        _ => &[],
    }
}

fn metric_name(kind: &str, name: &str) -> Option<&'static str> {
    metrics_of(kind).iter().copied().find(|m| *m == name)
}

fn build_sink(
    raw: &RawAlert,
    provider: &Arc<CryptoProvider>,
) -> std::result::Result<Arc<dyn AlertSink>, Failure> {
    let kind = raw.kind.get_ref().as_str();
    let timeout = match &raw.timeout {
        Some(t) => duration(t).map_err(|r| (Some(t.span()), "timeout", r))?,
        None => Duration::from_secs(10),
    };
    match kind {
        "webhook" => {
            if let Some(argv) = &raw.argv {
                return Err((
                    Some(argv.span()),
                    "argv",
                    "does not apply to a webhook".into(),
                ));
            }
            let url = required(&raw.url, "url", kind)?;
            let mut b = WebhookSink::builder(url.clone(), provider.clone()).with_timeout(timeout);
            if let Some(ca) = roots(&raw.ca_file)? {
                b = b.with_roots(ca);
            }
            if let Some(a) = &raw.attempts {
                b = b.with_attempts(*a.get_ref());
            }
            let span = raw.url.as_ref().map(Spanned::span);
            Ok(Arc::new(
                b.build().map_err(|e| (span, "url", reason_of(e)))?,
            ))
        }
        "command" => {
            if let Some(url) = &raw.url {
                return Err((
                    Some(url.span()),
                    "url",
                    "does not apply to a command".into(),
                ));
            }
            let argv = required(&raw.argv, "argv", kind)?;
            let span = raw.argv.as_ref().map(Spanned::span);
            Ok(Arc::new(
                CommandSink::new(argv.clone(), timeout)
                    .map_err(|e| (span, "argv", reason_of(e)))?,
            ))
        }
        other => Err((
            Some(raw.kind.span()),
            "kind",
            format!("unknown alert kind `{other}` (webhook, command)"),
        )),
    }
}
