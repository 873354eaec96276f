//! Connecting with a verdict for each way it fails.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

use crate::check::Observation;
use crate::error::{Result, invalid};
use crate::status::Reason;

/// A `host:port` target; the host may be a name, an IPv4 address or a bracketed IPv6 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Target {
    pub(crate) fn parse(field: &str, text: &str) -> Result<Target> {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| invalid(field, format!("`{text}` is not host:port")))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(field, format!("`{text}`: bad port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid(field, format!("`{text}`: no host")));
        }
        Ok(Target {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Resolves and connects; the error is a finished critical observation naming the cause.
pub(crate) async fn connect(
    target: &Target,
) -> std::result::Result<(TcpStream, Duration), Observation> {
    let begun = Instant::now();
    let addrs: Vec<SocketAddr> =
        match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
            Ok(a) => a.collect(),
            Err(e) => {
                return Err(Observation::critical(
                    Reason::Dns,
                    format!("cannot resolve {}: {e}", target.host),
                ));
            }
        };
    if addrs.is_empty() {
        return Err(Observation::critical(
            Reason::Dns,
            format!("{} has no address", target.host),
        ));
    }
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok((stream, begun.elapsed())),
            Err(e) => last = Some((addr, e)),
        }
    }
    Err(match last {
        Some((addr, e)) => connect_failure(&addr.to_string(), &e),
        None => Observation::critical(Reason::Dns, format!("{} has no address", target.host)),
    })
}

pub(crate) fn connect_failure(what: &str, e: &std::io::Error) -> Observation {
    if e.kind() == ErrorKind::ConnectionRefused {
        Observation::critical(Reason::Refused, format!("{what}: connection refused"))
    } else {
        Observation::critical(Reason::Connect, format!("{what}: {e}"))
    }
}
