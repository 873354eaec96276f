//! Log-scanning IP banning that runs fail2ban's filters.
//!
//! Pipeline: a source yields log lines, a filter turns a line into a [`Failure`] (a validated,
//! canonical address with its time), a jail counts failures and decides bans, and a ban sink
//! applies them (nftables, an argv command, or memory).
//!
//! ## Banning: jails, engine, sinks
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> logban::Result<()> {
//! use std::{sync::Arc, time::Duration};
//! use logban::{BanTime, Engine, Failure, JailConfig, MemorySink};
//!
//! let sink = Arc::new(MemorySink::new());
//! let jail = JailConfig::builder("sshd")
//!     .with_maxretry(3)
//!     .with_bantime(BanTime::For(Duration::from_secs(600)))
//!     .with_ignore(["192.0.2.0/24"])
//!     .build()?;
//! let engine = Engine::builder(sink.clone()).with_jail(jail).build().await?;
//! // Any `FnMut(&[u8]) -> Option<Failure>` (or a fail2ban `Filter`) turns lines into failures.
//! let mut matcher = |line: &[u8]| {
//!     let addr = std::str::from_utf8(line).ok()?.strip_prefix("bad login from ")?.parse().ok()?;
//!     Some(Failure::new(addr, logban_now()))
//! };
//! # fn logban_now() -> i64 { std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 }
//! for _ in 0..3 {
//!     engine.feed_line("sshd", b"bad login from 2001:db8::66", &mut matcher).await?;
//! }
//! assert!(sink.is_banned("sshd", "2001:db8::66".parse().unwrap()));
//! assert_eq!(engine.metrics().jail("sshd").snapshot().bans, 1);
//! # Ok(()) }
//! ```
//!
//! [`jail`] counts failures (maxretry within findtime, incremental bans, ignore lists, the
//! host's own addresses, IPv6 prefix grouping, a capped tracker); [`engine`] wires lines to jails
//! to a [`BanSink`] with retries, expiry, and restore from [`StateStore`]; [`sink`] has the
//! nftables, command and memory sinks; [`config`] and [`control`] are the daemon's TOML config
//! and its client protocol, and [`daemon`] wires them into the running daemon.
//!
//! Dependencies of the banning side, and why: `ipnet` (CIDR ignore lists and prefix bans, a
//! small well-kept crate), `if-addrs` (the host's own addresses without parsing `ip` output),
//! `redb` (pure-Rust, crash-safe embedded database for bans and log positions; no server),
//! `tokio` + `async-trait` (sinks run commands and sockets asynchronously; `BanSink` is a
//! trait object), `serde`/`serde_json`/`toml` (state records, the control protocol, the
//! daemon's config).
//!
//! ## Reading logs: sources and fail2ban filters
//!
//! ```
//! use logban::filter::{FilterBuilder, FilterDefinition};
//!
//! let mut def = FilterDefinition::new("demo");
//! def.failregex
//!     .push(r"^\s*\S+ sshd\[\d+\]: Failed password for <F-USER>\S+</F-USER> from <HOST>".into());
//! let mut filter = FilterBuilder::new(def).build()?;
//! let line = "Mar  1 00:00:00 web1 sshd[7]: Failed password for root from ::ffff:192.0.2.7 port 22";
//! let failures = filter.failures(line);
//! assert_eq!(failures[0].addr, "192.0.2.7".parse::<std::net::IpAddr>().unwrap());
//! assert_eq!(failures[0].user.as_deref(), Some("root"));
//! // Host names are reported by the filter but never become failures (nor are resolved).
//! assert!(filter.failures("Mar  1 00:00:01 web1 sshd[7]: Failed password for x from evil.example").is_empty());
//! # Ok::<(), logban::Error>(())
//! ```
//!
//! [`fail2ban::load_filter`] loads a stock filter by name with arguments
//! (`load_filter(dir, "sshd[mode=aggressive]")`): `[INCLUDES]`, `.local` files, `%(var)s` and
//! `<var>` substitution, prefregex, ignoreregex, datepattern, maxlines, journalmatch.
//! [`Filter::scan`] and [`Filter::scan_reader`] process a whole file or backlog on all cores
//! with exactly the results of a sequential scan; every line is first screened by DFAs (the
//! prefregex's head and supersets of the failregexes) before any capture or allocation.
//! [`fail2ban::import_jails`] reads jail.conf/jail.local. [`source`] has one trait,
//! [`LogSource`](source::LogSource), over files (rotation, copytruncate, saved positions,
//! globs), the journal (`journalctl -o json`) and in-memory lines; [`Engine::follow`] follows
//! any of them.
//!
//! Dependencies of the reading side, and why: `regex` (linear-time matching with literal
//! prefilters and a `RegexSet`; no input can make it backtrack), `fancy-regex` (only for the
//! few fail2ban regexes that need lookaround, backreferences or conditionals, run under a
//! backtrack budget), `regex-automata` and `regex-syntax` (the engines under `regex`, used
//! directly to read capture groups of very long matches in linear time: reverse lazy DFAs and a
//! bounded backtracker, which keeps hostile 300 KB lines under a millisecond or so), `jiff` (time
//! zones, including POSIX TZ strings, for dates logged without year or zone), `memchr` (the
//! parallel scan's line splitting, a SIMD search for `\n`; already under `regex`).

pub mod config;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod control;
pub mod daemon;
pub mod engine;
mod error;
pub mod fail2ban;
mod failure;
pub mod filter;
mod follow;
pub mod jail;
pub mod metrics;
pub mod sink;
pub mod source;
pub mod state;

pub use engine::{Engine, EngineBuilder, JailStatus, LineMatcher, LineOutcome};
pub use error::Error;
pub use failure::{Failure, canonical_addr};
pub use filter::{Filter, FilterBuilder, FilterDefinition, FilterMatch};
pub use jail::{Ban, BanIncrement, BanTime, Jail, JailConfig, Verdict};
pub use metrics::{JailCounters, Metrics};
pub use sink::{BanAction, BanSink, CommandSink, MemorySink, NftablesSink, SinkJail};
pub use state::{StateStore, StoredBan};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
