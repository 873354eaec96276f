//! Hostile input never panics: lines up to 1 MB, invalid UTF-8, binary garbage, through a
//! built-in multi-line filter (always) and stock fail2ban filters (`FAIL2BAN_FILTER_DIR`, required
//! through test-support: a skip is reported, and a failure under CI).

use logban::fail2ban::load_filter;
use logban::filter::{Filter, FilterBuilder, FilterDefinition};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Built once; each use gets a fresh clone (filters keep multi-line state).
fn builtin() -> Filter {
    static BUILT: std::sync::OnceLock<Filter> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let mut def = FilterDefinition::new("builtin");
            def.failregex = vec![
                r"^\s*\S+ \S+\[\d+\]: Failed \S+ for <F-USER>.*?</F-USER> from <HOST>( port \d+)?$"
                    .into(),
                r"^\s*<F-MLFID>\S+</F-MLFID> (?:<F-NOFAIL>begin</F-NOFAIL>|end <ADDR>)".into(),
            ];
            def.ignoreregex = vec![r"ignore me".into()];
            def.maxlines = 3;
            FilterBuilder::new(def).build().expect("builds")
        })
        .clone()
}

/// The stock filters hostile lines are run through, or `None` (skip recorded) without them.
fn stock_filters() -> Option<Vec<Filter>> {
    let dir = test_support::require_env("FAIL2BAN_FILTER_DIR", "fail2ban's filter.d")?;
    let filters = [
        "sshd[mode=aggressive]",
        "apache-auth",
        "postfix",
        "dovecot",
        "selinux-ssh",
    ]
    .into_iter()
    .map(|name| {
        let def = load_filter(std::path::Path::new(&dir), name).expect("stock filter loads");
        FilterBuilder::new(def).build().expect("builds")
    })
    .collect();
    Some(filters)
}

/// Runs arbitrary bytes through `filter`: whatever matched, a failure only carries a parsed address.
fn check_bytes(filter: &mut Filter, line: &[u8]) -> Result<(), TestCaseError> {
    for m in filter.process_bytes(line) {
        if let Some(fail) = m.to_failure() {
            prop_assert!(m.id.is_some());
            prop_assert_eq!(Some(fail.addr), m.addr);
        }
    }
    Ok(())
}

fn sshd_like(user: &str, tail: &[u8]) -> Vec<u8> {
    let mut line = format!(
        "Jan  1 00:00:00 host sshd[1]: Failed password for {user} from 192.0.2.1 port 22 ssh2"
    )
    .into_bytes();
    line.extend_from_slice(tail);
    line
}

/// Random bytes, a 1 MB run of address tokens, 1 MB of invalid UTF-8, and short odd lines.
fn hostile_lines() -> Vec<Vec<u8>> {
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
    vec![
        random,
        tokens.into_bytes(),
        invalid,
        Vec::new(),
        b"\n\n\0".to_vec(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(line in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_bytes(&mut builtin(), &line)?;
    }

    #[test]
    fn sshd_like_lines_with_garbage_never_panic(user in "\\PC{0,64}", tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_bytes(&mut builtin(), &sshd_like(&user, &tail))?;
    }
}

#[test]
fn one_megabyte_lines_never_panic() {
    for line in hostile_lines() {
        let _ = builtin().process_bytes(&line);
    }
}

/// The same hostile input through stock fail2ban filters.
#[test]
fn stock_filters_never_panic_on_garbage() {
    let Some(filters) = stock_filters() else {
        return;
    };
    let lines = hostile_lines();
    for filter in &filters {
        for line in &lines {
            let _ = filter.clone().process_bytes(line);
        }
    }
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..2048), |line| {
            filters
                .iter()
                .try_for_each(|f| check_bytes(&mut f.clone(), &line))
        })
        .expect("arbitrary bytes through stock filters");
    runner
        .run(
            &("\\PC{0,64}", proptest::collection::vec(any::<u8>(), 0..256)),
            |(user, tail)| {
                let line = sshd_like(&user, &tail);
                filters
                    .iter()
                    .try_for_each(|f| check_bytes(&mut f.clone(), &line))
            },
        )
        .expect("sshd-like garbage through stock filters");
}

/// Multi-line matches whose last character is multi-byte (the match span is cut back to whole
/// lines by byte offsets, which once sliced a `str` inside a character and panicked).
#[test]
fn multibyte_characters_at_multi_line_match_edges_never_panic() {
    let mut def = FilterDefinition::new("multibyte");
    def.failregex = vec![r"<F-MLFID>\S+</F-MLFID> end <ADDR> as <F-USER>\S+</F-USER>".into()];
    def.maxlines = 2;
    let mut f = FilterBuilder::new(def).build().expect("builds");
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
        let mut f = builtin();
        for line in &lines {
            let _ = f.process_bytes(line.as_bytes());
        }
    }
}
