//! Shared by the integration tests: where the test clamd is, and the EICAR test string.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use virusscan::ClamdClient;

/// The EICAR test string, assembled at run time so no file of this repository is itself a
/// test virus.
pub fn eicar() -> Vec<u8> {
    let mut v = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-".to_vec();
    v.extend_from_slice(b"STANDARD-ANTIVIRUS-TEST-FILE!$H+H*");
    v
}

/// The unix socket of the clamd scripts/services/virusscan.sh started, or `None` (skip).
pub fn socket() -> Option<String> {
    test_support::require_env(
        "HOSTGUARD_CLAMD_SOCKET",
        "clamd from scripts/services/virusscan.sh",
    )
}

/// Its TCP address.
pub fn tcp() -> Option<String> {
    test_support::require_env(
        "HOSTGUARD_CLAMD_TCP",
        "clamd from scripts/services/virusscan.sh",
    )
}

/// Its StreamMaxLength in bytes.
pub fn stream_max() -> u64 {
    std::env::var("HOSTGUARD_CLAMD_STREAM_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20)
}

/// A client on the unix socket (descriptor passing on).
pub fn unix_client() -> Option<ClamdClient> {
    let socket = socket()?;
    Some(
        ClamdClient::unix(socket)
            .with_io_timeout(Duration::from_secs(10))
            .with_stream_max_length(stream_max())
            .build()
            .expect("client"),
    )
}
