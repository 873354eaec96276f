//! The MySQL initial handshake (protocol 10) parser, on packets assembled here byte by byte from
//! the protocol documentation (dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase_packets_protocol_handshake_v10.html),
//! and on hostile input.

use healthcheck::checks::mysql::parse_greeting;
use proptest::prelude::*;

/// A HandshakeV10 payload: version, connection id, scramble halves, capabilities, plugin name.
fn greeting(version: &str, plugin: &str) -> Vec<u8> {
    let mut p = vec![10u8];
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend_from_slice(&7u32.to_le_bytes()); // connection id
    p.extend_from_slice(b"abcdefgh"); // auth-plugin-data-part-1
    p.push(0); // filler
    let caps: u32 = 0x0008_0000 | 0x8000 | 0x200 | 0x1; // PLUGIN_AUTH, SECURE_CONNECTION, PROTOCOL_41, LONG_PASSWORD
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.push(45); // character set
    p.extend_from_slice(&2u16.to_le_bytes()); // status flags
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21); // length of auth-plugin-data
    p.extend_from_slice(&[0u8; 10]); // reserved
    p.extend_from_slice(b"ijklmnopqrst\0"); // auth-plugin-data-part-2: 13 bytes, last NUL
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p
}

#[test]
fn mariadb_prefix_is_removed() {
    let g = parse_greeting(&greeting(
        "5.5.5-10.11.6-MariaDB-0+deb12u1",
        "mysql_native_password",
    ))
    .unwrap();
    assert_eq!(g.version, "10.11.6-MariaDB-0+deb12u1");
    assert!(g.mariadb);
    assert_eq!(g.version_number(), Some(101_106.0));
    assert_eq!(g.auth_plugin, "mysql_native_password");
}

#[test]
fn mysql_8_greeting() {
    let g = parse_greeting(&greeting("8.0.36", "caching_sha2_password")).unwrap();
    assert_eq!(g.version, "8.0.36");
    assert!(!g.mariadb);
    assert_eq!(g.version_number(), Some(80_036.0));
    assert_eq!(g.auth_plugin, "caching_sha2_password");
}

#[test]
fn refusals_and_garbage_are_errors() {
    // ERR packet: 0xff, code 1130, `#`, SQL state, message.
    let mut err = vec![0xff];
    err.extend_from_slice(&1130u16.to_le_bytes());
    err.extend_from_slice(b"#HY000Host '10.0.0.9' is not allowed to connect");
    let e = parse_greeting(&err).unwrap_err();
    assert_eq!(
        e,
        "server refused: error 1130: Host '10.0.0.9' is not allowed to connect"
    );
    assert_eq!(parse_greeting(&[]).unwrap_err(), "empty greeting");
    assert_eq!(
        parse_greeting(b"SSH-2.0-OpenSSH_9.2\r\n").unwrap_err(),
        "unsupported protocol version 83"
    );
    let full = greeting("8.0.36", "caching_sha2_password");
    assert!(
        parse_greeting(&full[..20])
            .unwrap_err()
            .contains("cut short")
    );
}

proptest! {
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_greeting(&bytes);
    }

    #[test]
    fn never_panics_on_truncated_greetings(cut in 0usize..80) {
        let full = greeting("5.5.5-10.11.6-MariaDB", "mysql_native_password");
        let _ = parse_greeting(&full[..cut.min(full.len())]);
    }
}
