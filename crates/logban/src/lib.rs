//! Log-scanning IP banning that runs fail2ban's filters.
//!
//! Pipeline: a source yields log lines, a filter turns a line into a [`Failure`] (a validated,
//! canonical address with its time), a jail counts failures and decides bans, and a ban sink
//! applies them (nftables, an argv command, or memory).

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod engine;
pub mod config;
pub mod control;
mod error;
pub mod fail2ban;
mod failure;
pub mod filter;
pub mod jail;
pub mod metrics;
pub mod sink;
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
