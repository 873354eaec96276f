//! The daemon's wiring: a [`DaemonConfig`] becomes a sink, an [`Engine`] with its jails and
//! state, one reader per jail following its [`LogSource`] (files or the journal) through its
//! fail2ban filter, an expiry ticker, and the control socket. The `logban` tool is a thin
//! binary over [`Daemon`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> logban::Result<()> {
//! use logban::config::DaemonConfig;
//! use logban::daemon::Daemon;
//!
//! let dir = tempfile::tempdir().expect("tempdir");
//! let socket = dir.path().join("logban.sock");
//! let toml = format!("[daemon]\nsocket = {socket:?}\n[sink]\nkind = \"memory\"\n");
//! let config = DaemonConfig::from_toml(&toml, "logban.toml".as_ref())?;
//! let daemon = Daemon::start(&config).await?;
//! assert!(socket.exists());
//! // A daemon runs until a signal; this one stops at once.
//! daemon.run_until(async {}).await?;
//! assert!(!socket.exists());
//! # Ok(()) }
//! ```
//!
//! Everything that blocks runs off the runtime's workers: file reads, matching, and the state
//! database's commits (one per sink batch, with its fsync) go to blocking threads; the journal's
//! read-ahead queue is bounded. A configured log that is missing (or a directory, or a glob
//! matching nothing) is a warning and the jail's `unreadable_logs` counter, not an error; a
//! missing file is read from its start when it appears.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::config::{DaemonConfig, JailSection};
use crate::source::{JournalConfig, LogSource};
use crate::{Engine, Error, FilterBuilder, Result, StateStore};

/// How often readers poll their logs. Polls are cheap (a stat and a read); 50 ms keeps a ban
/// within about 55 ms of its line at p99 (benches/results/logban-daemon.md), where 250 ms
/// gave 247 ms.
pub const POLL_PERIOD: Duration = Duration::from_millis(50);

/// How often bans are expired and failed sink changes retried.
const TICK_PERIOD: Duration = Duration::from_secs(1);

/// A running daemon: readers, ticker and control socket run as tasks on the current runtime.
#[derive(Debug)]
pub struct Daemon {
    engine: Engine,
    socket: PathBuf,
    cleanup_on_exit: bool,
    readers: Vec<JoinHandle<()>>,
    ticker: JoinHandle<()>,
    server: JoinHandle<Result<()>>,
}

/// A jail's reader before it starts: its source and its compiled filter.
struct Reader {
    jail: String,
    source: Box<dyn LogSource>,
    filter: crate::Filter,
}

fn jail_error(jail: &JailSection, what: &str, e: Error) -> Error {
    Error::InvalidConfig {
        field: format!("jail {}: {what}", jail.name),
        reason: crate::control::error_chain(&e),
    }
}

impl Daemon {
    /// Starts everything `config` names: loads every enabled jail's filter (a bad one is an
    /// error before anything else happens), builds the sink, opens the state database (its
    /// directory is created), prepares the jails on the sink and re-applies saved bans, opens
    /// the logs, binds the control socket (`config.daemon.socket`), and spawns the tasks.
    pub async fn start(config: &DaemonConfig) -> Result<Self> {
        let mut filters = Vec::new();
        for jail in config.enabled_jails() {
            if jail.logpath.is_empty() && !jail.journal {
                continue;
            }
            let spec = jail.filter_spec();
            let definition = crate::fail2ban::load_filter(&config.daemon.filter_dir, spec)
                .map_err(|e| jail_error(jail, &format!("filter {spec}"), e))?;
            let journalmatch = definition.journalmatch.clone();
            let filter = FilterBuilder::new(definition)
                .with_clock(jail.filter_clock()?)
                // The jails count attempts and never read a match's lines.
                .with_matched_lines(false)
                .build()
                .map_err(|e| jail_error(jail, &format!("filter {spec}"), e))?;
            filters.push((jail, filter, journalmatch));
        }
        let sink = config.sink.build()?;
        let mut builder = crate::Engine::builder(sink);
        for jail in config.enabled_jails() {
            builder = builder.with_jail(jail.to_jail_config()?);
        }
        if let Some(state) = &config.daemon.state {
            if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            builder = builder.with_state(StateStore::open(state)?);
        }
        let engine = builder.build().await?;
        let mut readers = Vec::new();
        for (jail, filter, journalmatch) in filters {
            let source: Box<dyn LogSource> = if jail.journal {
                let journal = JournalConfig {
                    matches: journalmatch,
                    follow: true,
                    ..JournalConfig::default()
                };
                Box::new(
                    engine
                        .open_journal(&jail.name, journal)
                        .map_err(|e| jail_error(jail, "journal", e))?,
                )
            } else {
                let paths: Vec<PathBuf> = jail.logpath.iter().map(PathBuf::from).collect();
                Box::new(
                    engine
                        .open_files(&paths)
                        .map_err(|e| jail_error(jail, "logpath", e))?,
                )
            };
            readers.push(Reader {
                jail: jail.name.clone(),
                source,
                filter,
            });
        }
        let socket = config.daemon.socket.clone();
        let listener = crate::control::bind(&socket).await?;
        let ticker = engine.spawn_ticker(TICK_PERIOD);
        let readers = readers
            .into_iter()
            .map(|reader| {
                let engine = engine.clone();
                tokio::spawn(async move {
                    let result = engine
                        .follow(&reader.jail, &*reader.source, reader.filter, POLL_PERIOD)
                        .await;
                    match result {
                        Ok(()) => tracing::warn!(jail = reader.jail, "log source ended"),
                        Err(e) => tracing::error!(
                            jail = reader.jail,
                            "stopped reading logs: {}",
                            crate::control::error_chain(&e)
                        ),
                    }
                })
            })
            .collect();
        let server = tokio::spawn(crate::control::serve(
            engine.clone(),
            listener,
            socket.clone(),
        ));
        tracing::info!(
            jails = engine.jail_names().len(),
            sink = engine.sink().name(),
            socket = %socket.display(),
            "logban started"
        );
        Ok(Self {
            engine,
            socket,
            cleanup_on_exit: config.daemon.cleanup_on_exit,
            readers,
            ticker,
            server,
        })
    }

    /// The engine (status, metrics, manual bans).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The control socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Runs until `shutdown` completes (a signal, say) or the control server fails, then
    /// [`stop`](Self::stop)s.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let served = tokio::select! {
            () = shutdown => Ok(()),
            result = &mut self.server => match result {
                Ok(result) => result,
                Err(e) => Err(Error::Io {
                    path: self.socket.clone(),
                    source: std::io::Error::other(format!("control server: {e}")),
                }),
            },
        };
        let stopped = self.stop().await;
        served.and(stopped)
    }

    /// Stops the readers, the ticker and the control socket (removing it), and with
    /// `cleanup_on_exit` removes the sink's rules (bans are kept in the state database).
    pub async fn stop(self) -> Result<()> {
        self.server.abort();
        self.ticker.abort();
        for reader in &self.readers {
            reader.abort();
        }
        for reader in self.readers {
            let _ = reader.await;
        }
        let _ = std::fs::remove_file(&self.socket);
        if self.cleanup_on_exit {
            self.engine.cleanup_sink().await?;
            tracing::info!("removed the sink's rules");
        }
        tracing::info!("logban stopped");
        Ok(())
    }
}
