//! The event a filter hands to a jail.

use std::net::IpAddr;

/// One failure found in a log: the only thing that ever reaches a jail.
///
/// `addr` is canonical (see [`canonical_addr`]) when the failure comes from a filter or
/// [`Failure::new`]. Host names and other ids that are not addresses never become a `Failure`:
/// logban does not resolve names at all (a filter reports them as ids of its matches, see
/// [`crate::filter::UseDns`]).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The offending address, canonical.
    pub addr: IpAddr,
    /// When the failure happened, in seconds since the Unix epoch (from the log line's date).
    pub time: i64,
    /// The user name the filter captured (`<F-USER>`), if any.
    pub user: Option<String>,
    /// How many failures this one event counts for (fail2ban's `<F-MLFGAINED>`-style weights; usually 1).
    pub attempts: u32,
}

impl Failure {
    /// One failure (weight 1, no user) of `addr`, made canonical, at `time` (Unix seconds).
    pub fn new(addr: IpAddr, time: i64) -> Self {
        Self {
            addr: canonical_addr(addr),
            time,
            user: None,
            attempts: 1,
        }
    }

    /// The user name the filter captured.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
}

/// Canonicalizes an address: IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4.
pub fn canonical_addr(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv6_becomes_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("valid");
        assert_eq!(
            canonical_addr(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("valid")
        );
        let plain: IpAddr = "2001:db8::1".parse().expect("valid");
        assert_eq!(canonical_addr(plain), plain);
    }

    #[test]
    fn new_failures_carry_the_canonical_address() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("valid");
        let failure = Failure::new(mapped, 5).with_user("root");
        assert_eq!(failure.addr, "192.0.2.7".parse::<IpAddr>().expect("valid"));
        assert_eq!((failure.time, failure.attempts), (5, 1));
        assert_eq!(failure.user.as_deref(), Some("root"));
    }
}
