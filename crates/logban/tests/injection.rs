//! Log injection (the cases behind fail2ban's CVE-2013-2178, -7176, -7177): attacker-controlled
//! text (user names, request paths, client strings) that contains an address must never make
//! that address a failure. Runs Debian's stock filters.

use std::net::IpAddr;
use std::path::PathBuf;

use logban::fail2ban::load_filter;
use logban::filter::{Clock, FilterBuilder};

const INJECTED: &str = "203.0.113.66";

/// (filter, line, the real attacker if the line is a failure).
const CASES: &[(&str, &str, Option<&str>)] = &[
    // CVE-2013-2178 style: the user name carries an address (apache-auth).
    (
        "apache-auth",
        "[Sat Jun 01 11:23:08 2013] [error] [client 192.0.2.10] user 203.0.113.66 not found: /",
        Some("192.0.2.10"),
    ),
    (
        "apache-auth",
        "[Sat Jun 01 02:17:42 2013] [error] [client 192.0.2.10] user test-demo [client 203.0.113.66] user test-demo authentication failure: /",
        None,
    ),
    (
        "apache-auth",
        "[Sat Jun 01 11:23:08 2013] [error] [client 192.0.2.10] user [client 203.0.113.66] authentication failure for \"/\": Password Mismatch",
        Some("192.0.2.10"),
    ),
    // Request paths with client strings (apache-noscript, nginx-http-auth).
    (
        "apache-noscript",
        "[Sun Jun 09 07:57:47 2013] [error] [client 192.0.2.10] script '/var/www/[client 203.0.113.66] x.php' not found or unable to stat",
        Some("192.0.2.10"),
    ),
    (
        "nginx-http-auth",
        "2012/04/09 11:53:29 [error] 2865#0: *66647 user \"xyz\" was not found in \"/www/.htpasswd\", client: 192.0.2.10, server: www.example.com, request: \"GET /client: 203.0.113.66 HTTP/1.1\", host: \"www.example.com\"",
        Some("192.0.2.10"),
    ),
    (
        "nginx-http-auth",
        "2012/04/09 11:53:29 [error] 2865#0: *66647 user \"client: 203.0.113.66,\" was not found in \"/www/.htpasswd\", client: 192.0.2.10, server: www.example.com, request: \"GET / HTTP/1.1\", host: \"www.example.com\"",
        Some("192.0.2.10"),
    ),
    // sshd: user names and ruser strings (CVE-2013-7176/-7177 style, OpenSSH >= 6.3 format).
    (
        "sshd",
        "Nov 11 08:04:52 srv sshd[2737]: Failed password for invalid user 203.0.113.66 from 192.0.2.10 port 22 ssh2",
        Some("192.0.2.10"),
    ),
    (
        "sshd",
        "Nov 11 08:04:52 srv sshd[2737]: Failed password for invalid user from 203.0.113.66 port 22 ssh2 from 192.0.2.10 port 55555 ssh2",
        None,
    ),
    (
        "sshd",
        "Nov 11 08:04:52 srv sshd[2737]: Failed password for root from 192.0.2.10 port 22 ssh2: ruser from 203.0.113.66",
        Some("192.0.2.10"),
    ),
    (
        "sshd",
        "Nov 11 08:04:52 srv sshd[2737]: Invalid user from 203.0.113.66 from 192.0.2.10 port 22",
        Some("192.0.2.10"),
    ),
    // Mail: addresses in envelope senders and HELO strings (postfix, cyrus-imap, dovecot).
    (
        "postfix",
        "Jan 31 13:55:44 srv postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[192.0.2.10]: 554 5.7.1 <x@example.com>: Relay access denied; from=<a[203.0.113.66]@example.com> to=<x@example.com> proto=ESMTP helo=<[203.0.113.66]>",
        Some("192.0.2.10"),
    ),
    (
        "cyrus-imap",
        "Jan 31 13:55:44 srv imap[1]: badlogin: example.com [192.0.2.10] plaintext user[203.0.113.66] SASL(-13): authentication failure: checkpass failed",
        Some("192.0.2.10"),
    ),
    (
        "dovecot",
        "Jan 31 13:55:44 srv dovecot: auth: passwd-file(203.0.113.66,192.0.2.10): unknown user",
        None,
    ),
];

#[test]
fn injected_addresses_never_become_failures() {
    let Some(dir) = test_support::require_env("FAIL2BAN_FILTER_DIR", "fail2ban's filter.d") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let injected: IpAddr = INJECTED.parse().expect("ip");
    let mut real_found = 0;
    for (name, line, real) in CASES {
        for spec in [name.to_string(), format!("{name}[mode=aggressive]")] {
            let Ok(def) = load_filter(&dir, &spec) else {
                continue;
            };
            let mut filter = FilterBuilder::new(def)
                .with_clock(Clock::fixed(jiff::tz::TimeZone::UTC, 1_400_000_000))
                .with_check_all_regex(true)
                .build()
                .expect("stock filter builds");
            let failures = filter.failures(line);
            assert!(
                failures.iter().all(|f| f.addr != injected),
                "{spec}: injected address banned from {line}"
            );
            if let Some(real) = real {
                let real: IpAddr = real.parse().expect("ip");
                if failures.iter().any(|f| f.addr == real) {
                    real_found += 1;
                }
            }
        }
    }
    // The failures themselves are still found: the filters are not simply blind.
    assert!(real_found >= 8, "only {real_found} real attackers found");
}
