//! Verdicts: the four Nagios states and the reason a check gives for its state.

use serde::Serialize;
use std::fmt;

/// The state of a check, ordered from best to worst as Nagios orders them for a host report
/// (Unknown sorts between Warning and Critical in severity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Everything is as expected.
    Ok,
    /// A warning threshold was crossed.
    Warning,
    /// A critical threshold was crossed, or the target failed.
    Critical,
    /// The check could not decide (bad answer, the check itself failed).
    Unknown,
}

impl Status {
    /// The Nagios plugin exit code: 0, 1, 2 or 3.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    /// Severity for picking the worst of several states: OK < WARNING < UNKNOWN < CRITICAL.
    pub fn severity(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Unknown => 2,
            Status::Critical => 3,
        }
    }

    /// The worse of two states.
    pub fn worst(self, other: Status) -> Status {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The upper-case name Nagios prints (`OK`, `WARNING`, `CRITICAL`, `UNKNOWN`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a check reached its state: each failure mode an operator acts on differently has its own.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The target answered as expected (thresholds may still raise the state).
    Ok,
    /// A metric crossed its warning or critical range.
    Threshold,
    /// The check did not finish within its timeout (a hung target or mount).
    Timeout,
    /// The TCP connection was refused (nothing listens).
    Refused,
    /// The host name did not resolve.
    Dns,
    /// Connecting failed otherwise (unreachable network, reset).
    Connect,
    /// The peer answered something the check cannot read.
    Protocol,
    /// The HTTP status was not an expected one.
    HttpStatus,
    /// The body did not contain the expected text.
    BodyMismatch,
    /// The certificate has expired (its dates are still read).
    CertExpired,
    /// The certificate is not valid yet.
    CertNotYetValid,
    /// The certificate does not chain to a trusted root.
    CertUntrusted,
    /// The certificate is not valid for the host name.
    CertNameMismatch,
    /// The certificate is invalid for another reason (bad signature, revoked, bad usage).
    CertInvalid,
    /// The process is not running.
    NotRunning,
    /// The file is missing.
    Missing,
    /// The filesystem is mounted read-only.
    ReadOnly,
    /// The server refused the credentials.
    AuthFailed,
    /// The check failed locally (cannot read /proc, bad path).
    CheckFailed,
}

impl Reason {
    /// A stable snake_case name, used in JSON, metrics labels and alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Threshold => "threshold",
            Reason::Timeout => "timeout",
            Reason::Refused => "refused",
            Reason::Dns => "dns",
            Reason::Connect => "connect",
            Reason::Protocol => "protocol",
            Reason::HttpStatus => "http_status",
            Reason::BodyMismatch => "body_mismatch",
            Reason::CertExpired => "cert_expired",
            Reason::CertNotYetValid => "cert_not_yet_valid",
            Reason::CertUntrusted => "cert_untrusted",
            Reason::CertNameMismatch => "cert_name_mismatch",
            Reason::CertInvalid => "cert_invalid",
            Reason::NotRunning => "not_running",
            Reason::Missing => "missing",
            Reason::ReadOnly => "read_only",
            Reason::AuthFailed => "auth_failed",
            Reason::CheckFailed => "check_failed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
