//! Very long lines are decided, as fail2ban-regex 1.0.2 decides them: a "Failed password for
//! invalid user X" line matches the stock sshd filter with X of 40 KB and of 10 MB (sshd's two
//! failregexes with conditionals run on the backtracking engine, whose budget grows with the
//! line), and no line is left undecided.

use std::path::PathBuf;

use logban::fail2ban::load_filter;
use logban::filter::{Clock, FilterBuilder};

fn check_long_user(dir: &std::path::Path, user_len: usize) {
    let def = load_filter(dir, "sshd").expect("stock sshd filter loads");
    let mut filter = FilterBuilder::new(def)
        .with_clock(Clock::fixed(jiff::tz::TimeZone::UTC, 1_124_013_600))
        .build()
        .expect("builds");
    let user: String = "ab".repeat(user_len / 2);
    let line = format!(
        "Aug 14 11:00:00 srv sshd[4242]: Failed password for invalid user {user} from 192.0.2.77 port 40022 ssh2"
    );
    let found = filter.process_line(&line);
    let failure = found
        .iter()
        .find_map(|m| m.to_failure())
        .unwrap_or_else(|| panic!("a {}-byte line matches", line.len()));
    assert_eq!(
        failure.addr,
        "192.0.2.77".parse::<std::net::IpAddr>().expect("ip")
    );
    assert_eq!(failure.user.as_deref(), Some(user.as_str()));
    assert_eq!(filter.stats().undecided, 0);
}

#[test]
fn a_failed_password_line_with_a_40_kb_user_matches() {
    let Some(dir) = test_support::require_env("FAIL2BAN_FILTER_DIR", "fail2ban's filter.d") else {
        return;
    };
    check_long_user(&PathBuf::from(dir), 40 << 10);
}

#[test]
fn a_failed_password_line_with_a_10_mb_user_matches() {
    let Some(dir) = test_support::require_env("FAIL2BAN_FILTER_DIR", "fail2ban's filter.d") else {
        return;
    };
    check_long_user(&PathBuf::from(dir), 10 << 20);
}
