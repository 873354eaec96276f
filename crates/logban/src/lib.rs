//! Log-scanning IP banning that runs fail2ban's filters.
//!
//! Pipeline: a source yields log lines, a filter turns a line into a [`Failure`] (a validated,
//! canonical address with its time), a jail counts failures and decides bans, and a ban sink
//! applies them (nftables, an argv command, or memory).

pub mod config;
pub mod control;
mod error;
mod failure;
pub mod jail;
pub mod sink;
pub mod state;
pub mod metrics;
pub mod engine;
#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::Error;
pub use failure::{Failure, canonical_addr};
pub use jail::{Ban, BanIncrement, BanTime, Jail, JailConfig, Verdict};
pub use sink::{BanAction, BanSink, CommandSink, MemorySink, NftablesSink, SinkJail};
pub use state::{StateStore, StoredBan};
pub use metrics::{JailCounters, Metrics};
pub use engine::{Engine, EngineBuilder, JailStatus, LineMatcher, LineOutcome};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
