//! A sink that keeps bans in memory: for embedding (the host application checks
//! [`MemorySink::is_banned`]) and for tests (it can be told to fail).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use async_trait::async_trait;
use ipnet::IpNet;

use super::{BanAction, BanSink, sink_error};
use crate::Result;

/// Bans held in memory, expiring on their own like kernel set timeouts.
#[derive(Debug, Default)]
pub struct MemorySink {
    bans: super::BanTable,
    fail_next: AtomicU32,
    applied_batches: AtomicU64,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` calls to `apply` fail without changing anything (for tests of retry
    /// and reporting).
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// How many batches were applied successfully.
    pub fn applied_batches(&self) -> u64 {
        self.applied_batches.load(Ordering::SeqCst)
    }

    /// True if `addr` falls in a live ban of `jail`.
    pub fn is_banned(&self, jail: &str, addr: IpAddr) -> bool {
        self.bans.covers(jail, addr)
    }
}

#[async_trait]
impl BanSink for MemorySink {
    async fn apply(&self, actions: &[BanAction]) -> Result<()> {
        let injected = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if injected.is_ok() {
            return Err(sink_error("memory", "injected failure"));
        }
        self.bans.apply(actions);
        self.applied_batches.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn list(&self, jail: &str) -> Result<Vec<IpNet>> {
        Ok(self.bans.list(jail))
    }

    async fn cleanup(&self) -> Result<()> {
        self.bans.clear();
        Ok(())
    }

    fn name(&self) -> &str {
        "memory"
    }
}

#[cfg(all(test, feature = "conformance"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_sink_conforms() {
        let sink = MemorySink::new();
        crate::conformance::run_all(&sink).await;
    }

    #[tokio::test]
    async fn injected_failures_change_nothing() {
        let sink = MemorySink::new();
        sink.fail_next(1);
        let target: IpNet = "192.0.2.1/32".parse().expect("net");
        assert!(sink.ban("j", target, None).await.is_err());
        assert!(sink.list("j").await.expect("list").is_empty());
        sink.ban("j", target, None).await.expect("second try works");
        assert!(sink.is_banned("j", "192.0.2.1".parse().expect("ip")));
        assert_eq!(sink.applied_batches(), 1);
    }
}
