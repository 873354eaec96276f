//! Hostile input never panics: lines up to 1 MB, invalid UTF-8, binary garbage, through stock
//! filters (when FAIL2BAN_FILTER_DIR is set) and a built-in multi-line filter.

use logban::fail2ban::load_filter;
use logban::filter::{Filter, FilterBuilder, FilterDefinition};
use proptest::prelude::*;

/// Built once; each use gets fresh clones (filters keep multi-line state).
fn filters() -> Vec<Filter> {
    static BUILT: std::sync::OnceLock<Vec<Filter>> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_filters).clone()
}

fn build_filters() -> Vec<Filter> {
    let mut out = vec![
        FilterBuilder::new(FilterDefinition {
            name: "builtin".into(),
            failregex: vec![
                r"^\s*\S+ \S+\[\d+\]: Failed \S+ for <F-USER>.*?</F-USER> from <HOST>( port \d+)?$"
                    .into(),
                r"^\s*<F-MLFID>\S+</F-MLFID> (?:<F-NOFAIL>begin</F-NOFAIL>|end <ADDR>)".into(),
            ],
            ignoreregex: vec![r"ignore me".into()],
            maxlines: 3,
            ..FilterDefinition::default()
        })
        .build()
        .expect("builds"),
    ];
    if let Ok(dir) = std::env::var("FAIL2BAN_FILTER_DIR") {
        for name in [
            "sshd[mode=aggressive]",
            "apache-auth",
            "postfix",
            "dovecot",
            "selinux-ssh",
        ] {
            let def = load_filter(std::path::Path::new(&dir), name).expect("stock filter loads");
            out.push(FilterBuilder::new(def).build().expect("builds"));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for mut f in filters() {
            for m in f.process_bytes(&line) {
                // Whatever matched, a failure only ever carries a parsed address.
                if let Some(fail) = m.to_failure() {
                    prop_assert!(m.id.is_some());
                    prop_assert_eq!(Some(fail.addr), m.addr);
                }
            }
        }
    }

    #[test]
    fn sshd_like_lines_with_garbage_never_panic(user in "\\PC{0,64}", tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut line = format!("Jan  1 00:00:00 host sshd[1]: Failed password for {user} from 192.0.2.1 port 22 ssh2").into_bytes();
        line.extend_from_slice(&tail);
        for mut f in filters() {
            let _ = f.process_bytes(&line);
        }
    }
}

#[test]
fn one_megabyte_lines_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let random: Vec<u8> = (0..1 << 20)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let tokens = format!(
        "Jan  1 00:00:00 host sshd[1]: Failed password for {} from 192.0.2.1 port 22 ssh2",
        "from 203.0.113.9 ".repeat((1 << 20) / 17)
    );
    let invalid: Vec<u8> =
        b"Jan  1 00:00:00 host sshd[1]: Failed password for \xff\xfe\xc0 from 192.0.2.1"
            .iter()
            .copied()
            .cycle()
            .take(1 << 20)
            .collect();
    for mut f in filters() {
        for line in [&random[..], tokens.as_bytes(), &invalid[..], b"", b"\n\n\0"] {
            let _ = f.process_bytes(line);
        }
    }
}

/// Multi-line matches whose last character is multi-byte (the match span is cut back to whole
/// lines by byte offsets, which once sliced a `str` inside a character and panicked).
#[test]
fn multibyte_characters_at_multi_line_match_edges_never_panic() {
    let mut f = FilterBuilder::new(FilterDefinition {
        name: "multibyte".into(),
        failregex: vec![r"<F-MLFID>\S+</F-MLFID> end <ADDR> as <F-USER>\S+</F-USER>".into()],
        maxlines: 2,
        ..FilterDefinition::default()
    })
    .build()
    .expect("builds");
    let mut addrs = Vec::new();
    for line in [
        "Jan  1 00:00:00 ab begin",
        "Jan  1 00:00:01 ab end 192.0.2.1 as rootй",
        "Jan  1 00:00:02 cd end 192.0.2.2 as ✓",
    ] {
        for m in f.process_bytes(line.as_bytes()) {
            if let Some(fail) = m.to_failure() {
                addrs.push(fail.addr.to_string());
            }
        }
    }
    assert_eq!(addrs, ["192.0.2.1", "192.0.2.2"]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Several lines through one filter, so multi-line buffers hold more than one line.
    #[test]
    fn line_sequences_never_panic(lines in proptest::collection::vec("\\PC{0,40}", 1..8)) {
        let mut f = filters().remove(0);
        for line in &lines {
            let _ = f.process_bytes(line.as_bytes());
        }
    }
}
