//! TCP connect.

use crate::check::{Check, Observation, Unit};
use crate::checks::net::{Target, connect};
use crate::error::Result;

/// Connects to `host:port`; metric `connect_seconds`.
#[derive(Debug, Clone)]
pub struct TcpCheck {
    target: Target,
}

impl TcpCheck {
    /// A check of `host:port` (IPv6 in brackets).
    pub fn new(address: &str) -> Result<TcpCheck> {
        Ok(TcpCheck {
            target: Target::parse("address", address)?,
        })
    }
}

#[async_trait::async_trait]
impl Check for TcpCheck {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn primary_metric(&self) -> Option<&'static str> {
        Some("connect_seconds")
    }

    async fn run(&self) -> Observation {
        match connect(&self.target).await {
            Ok((_stream, took)) => Observation::ok(format!(
                "{} accepted in {:.1} ms",
                self.target,
                took.as_secs_f64() * 1e3
            ))
            .with_metric("connect_seconds", took.as_secs_f64(), Unit::Seconds),
            Err(o) => o,
        }
    }
}
