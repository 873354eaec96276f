//! Which date a line gets when several templates (or one template at several places) match:
//! fail2ban's `DateDetector.matchTime` (last template first, distance collisions, templates
//! reordered by hits), and how a date without a year is completed around the new year.
//!
//! The lines and expected dates of the `fail2ban_*` tests are quoted from fail2ban 1.0.2's
//! `fail2ban/tests/datedetectortestcase.py` (GPL-2.0-or-later, see `tests/data/README.md`), run
//! with fail2ban's test clock (Sun Aug 14 12:00:00 CEST 2005) and zone. `agrees_with_fail2ban_regex`
//! runs the installed `fail2ban-regex` on a log of such lines and compares every date.

use jiff::tz::TimeZone;
use logban::filter::{Clock, DateDetector};

const TEST_NOW: i64 = 1_124_013_600;

fn f2b_clock() -> Clock {
    Clock::fixed(
        TimeZone::posix("CET-01CEST-02,M3.5.0,M10.5.0").expect("tz"),
        TEST_NOW,
    )
}

/// The date text and time `dd` finds in `line`.
fn date(dd: &mut DateDetector, line: &str, clock: &Clock) -> Option<(String, Option<f64>)> {
    dd.find(line, clock)
        .map(|f| (line[f.span.0..f.span.1].to_string(), f.time))
}

/// datedetectortestcase.py, testAmbiguousInOrderedTemplates: one detector over all lines, each
/// line repeated; the date fail2ban takes is not always the first template's.
#[test]
fn fail2ban_ambiguous_in_ordered_templates() {
    let clock = f2b_clock();
    let mut dd = DateDetector::default_templates();
    let cases: &[(&str, &str, usize)] = &[
        // shortest distance to datetime should win:
        (
            "030324  0:03:59",
            "some free text 030324  0:03:59 -- 2003-03-07 17:05:01 ...",
            1,
        ),
        // some free text with datetime:
        (
            "2003-03-07 17:05:01",
            "some free text 2003-03-07 17:05:01 test ...",
            15,
        ),
        // distance collision detection (date from foreign input should not be found):
        (
            "030324  0:04:00",
            "server mysqld[1000]: 030324  0:04:00 [Warning] Access denied ... foreign-input just some free text 2003-03-07 17:05:01 test",
            10,
        ),
        // distance collision detection (first date should be found):
        (
            "Sep 16 21:30:26",
            "server mysqld[1020]: Sep 16 21:30:26 server mysqld: 030916 21:30:26 [Warning] Access denied",
            15,
        ),
        // just to test sorting:
        (
            "2005-10-07 06:09:42",
            "server mysqld[5906]: 2005-10-07 06:09:42 5907 [Warning] Access denied",
            20,
        ),
        (
            "2005-10-08T15:26:18.237955",
            "server mysqld[5906]: 2005-10-08T15:26:18.237955 6 [Note] Access denied",
            20,
        ),
        // date format changed again:
        (
            "051009 10:05:30",
            "server mysqld[1000]: 051009 10:05:30 [Warning] Access denied ...",
            50,
        ),
    ];
    for (want, line, count) in cases {
        for n in 0..*count {
            let (text, _) = date(&mut dd, line, &clock).expect("a date");
            assert_eq!(&text, want, "repetition {n} of {line}");
        }
    }
}

/// testFullYearMatch_gh130: a switch of format (year last) and back, on one detector.
#[test]
fn fail2ban_full_year_match_gh130() {
    let clock = f2b_clock();
    let mut dd = DateDetector::default_templates();
    // 2012-10-11 02:37:17 CEST
    let mu = 1_349_915_837.0;
    let first = "2012/10/11 02:37:17 [error] 18434#0";
    let other = "11/10/2012 02:37:17 [error] 18434#0";
    assert_eq!(
        date(&mut dd, first, &clock),
        Some(("2012/10/11 02:37:17".into(), Some(mu)))
    );
    for _ in 0..10 {
        assert_eq!(
            date(&mut dd, other, &clock),
            Some(("11/10/2012 02:37:17".into(), Some(mu)))
        );
    }
    assert_eq!(
        date(&mut dd, first, &clock),
        Some(("2012/10/11 02:37:17".into(), Some(mu)))
    );
}

/// testNotAnchoredCollision: one unanchored template whose date moves and changes length.
#[test]
fn fail2ban_not_anchored_collision() {
    let clock = f2b_clock();
    for pattern in ["%H:%M:%S", "{UNB}%H:%M:%S"] {
        let mut dd = DateDetector::from_datepattern(pattern).expect("pattern");
        for fmt in ["{} test", "{:>8} test", "test {}", "test {:>8}"] {
            for dt in [
                "00:01:02", "00:01:2", "00:1:2", "0:1:2", "00:1:2", "00:01:2", "00:01:02", "0:1:2",
                "00:01:02",
            ] {
                let line = match fmt {
                    "{} test" => format!("{dt} test"),
                    "{:>8} test" => format!("{dt:>8} test"),
                    "test {}" => format!("test {dt}"),
                    _ => format!("test {dt:>8}"),
                };
                assert_eq!(
                    date(&mut dd, &line, &clock),
                    Some((dt.to_string(), Some(1_123_970_462.0))),
                    "{pattern}: {line:?}"
                );
            }
        }
    }
}

/// testVariousTimes: every default format with and without a prefix, on one detector (each line
/// looked up twice, as the test does with `getTime` then `matchTime`).
#[test]
fn fail2ban_various_times() {
    let clock = f2b_clock();
    let mut dd = DateDetector::default_templates();
    // (anchored, bound, date in the line, date fail2ban matches if not the same)
    let cases: &[(bool, bool, &str, Option<&str>)] = &[
        (false, true, "Jan 23 21:59:59", None),
        (false, false, "Sun Jan 23 21:59:59 2005", None),
        (false, false, "Sun Jan 23 21:59:59", None),
        (false, false, "Sun Jan 23 2005 21:59:59", None),
        (false, true, "2005/01/23 21:59:59", None),
        (false, true, "2005.01.23 21:59:59", None),
        (false, true, "23/01/2005 21:59:59", None),
        (false, true, "23/01/05 21:59:59", None),
        (false, true, "23/Jan/2005:21:59:59", None),
        (false, true, "23/Jan/2005:21:59:59 +0100", None),
        (false, true, "01/23/2005:21:59:59", None),
        (false, true, "2005-01-23 21:59:59", None),
        (false, true, "2005-01-23 21:59:59,000", None),
        (false, true, "23-Jan-2005 21:59:59", None),
        (false, true, "23-Jan-2005 21:59:59.02", None),
        (false, true, "23-Jan-2005 21:59:59 +0100", None),
        (false, true, "23-01-2005 21:59:59", None),
        (true, true, "1106513999", None),
        (false, true, "01-23-2005 21:59:59.252", None),
        (false, false, "@4000000041f4104f00000000", None),
        (false, true, "2005-01-23T20:59:59.252Z", None),
        (false, true, "2005-01-23T15:59:59-05:00", None),
        (false, true, "2005-01-23 21:59:59", None),
        (false, true, "20050123T215959", None),
        (false, true, "20050123 215959", None),
        (true, true, "<01/23/05@21:59:59>", None),
        (false, true, "050123 21:59:59", None),
        (true, true, "Jan-23-05 21:59:59", None),
        (false, true, "Jan 23, 2005 9:59:59 PM", None),
        (true, true, "1106513999", None),
        (true, true, "1106513999.000", None),
        (true, true, "[1106513999.000]", Some("1106513999.000")),
        (
            false,
            true,
            "audit(1106513999.000:987)",
            Some("1106513999.000"),
        ),
    ];
    for &(anchored, bound, sdate, rdate) in cases {
        let rdate = rdate.unwrap_or(sdate);
        for (should_match, prefix) in [
            (true, ""),
            (!anchored, "bogus-prefix "),
            (false, "word-boundary"),
        ] {
            if !bound && prefix == "word-boundary" {
                continue;
            }
            let line = format!("{prefix}{sdate}[sshd] error: PAM: Authentication failure");
            for _ in 0..2 {
                let got = date(&mut dd, &line, &clock);
                if should_match {
                    assert_eq!(
                        got,
                        Some((rdate.to_string(), Some(1_106_513_999.0))),
                        "{line}"
                    );
                } else {
                    assert_eq!(got, None, "{line}");
                }
            }
        }
    }
    let line = "no date line[sshd] error: PAM: Authentication failure";
    assert_eq!(date(&mut dd, line, &clock), None);
}

/// testAmbiguousDatePattern, the rows run on one detector with the default templates.
#[test]
fn fail2ban_ambiguous_date_pattern_defaults() {
    let clock = f2b_clock();
    let mut dd = DateDetector::default_templates();
    let cases: &[(Option<&str>, &str)] = &[
        (
            Some("Jan 23 21:59:59"),
            "Test failure Jan 23 21:59:59 for 192.0.2.1",
        ),
        // ambiguous "unbound" patterns (missed):
        (
            None,
            "Test failure TestJan 23 21:59:59.011 2015 for 192.0.2.1",
        ),
        (None, "Test failure Jan 23 21:59:59123456789 for 192.0.2.1"),
        // ambiguous "no optional year" patterns (matched):
        (
            Some("Aug 8 11:25:50"),
            "Aug 8 11:25:50 20030f2329b8 Authentication failed from 192.0.2.1",
        ),
        (
            Some("Aug 8 11:25:50"),
            "[Aug 8 11:25:50] 20030f2329b8 Authentication failed from 192.0.2.1",
        ),
        (
            Some("Aug 8 11:25:50 2014"),
            "Aug 8 11:25:50 2014 20030f2329b8 Authentication failed from 192.0.2.1",
        ),
        (
            Some("2003-12-30 00:00:00"),
            "0000-12-30 00:00:00 - 2003-12-30 00:00:00",
        ),
        (
            Some("20031230 010203"),
            "text:200333 010203 | date:20031230 010203",
        ),
    ];
    for (want, line) in cases {
        let got = date(&mut dd, line, &clock).map(|(text, _)| text);
        assert_eq!(got.as_deref(), *want, "{line}");
    }
}

/// testAmbiguousDatePattern, the rows with their own `datepattern` (a new detector each).
#[test]
fn fail2ban_ambiguous_date_pattern_custom() {
    let clock = f2b_clock();
    let cases: &[(Option<&str>, &str, &str)] = &[
        (
            Some("20:00:00 01.02.2003"),
            r"%H:%M:%S %d.%m.%Y$",
            "192.0.2.1 at 20:00:00 01.02.2003",
        ),
        (
            Some("[20:00:00 01.02.2003]"),
            r"\[%H:%M:%S %d.%m.%Y\]",
            "192.0.2.1[20:00:00 01.02.2003]",
        ),
        (
            Some("[20:00:00 01.02.2003]"),
            r"\[%H:%M:%S %d.%m.%Y\]",
            "[20:00:00 01.02.2003]192.0.2.1",
        ),
        (
            Some("[20:00:00 01.02.2003]"),
            r"\[%H:%M:%S %d.%m.%Y\]$",
            "192.0.2.1[20:00:00 01.02.2003]",
        ),
        (
            Some("[20:00:00 01.02.2003]"),
            r"^\[%H:%M:%S %d.%m.%Y\]",
            "[20:00:00 01.02.2003]192.0.2.1",
        ),
        (
            Some("[17/Jun/2011 17:00:45]"),
            r"^\[%d/%b/%Y %H:%M:%S\]",
            "[17/Jun/2011 17:00:45] Attempt, IP address 192.0.2.1",
        ),
        (
            Some("[17/Jun/2011 17:00:45]"),
            r"\[%d/%b/%Y %H:%M:%S\]",
            "Attempt [17/Jun/2011 17:00:45] IP address 192.0.2.1",
        ),
        (
            Some("[17/Jun/2011 17:00:45]"),
            r"\[%d/%b/%Y %H:%M:%S\]",
            "Attempt IP address 192.0.2.1, date: [17/Jun/2011 17:00:45]",
        ),
        (None, r"%H:%M:%S %d.%m.%Y", "192.0.2.1x20:00:00 01.02.2003"),
        (None, r"%H:%M:%S %d.%m.%Y", "20:00:00 01.02.2003x192.0.2.1"),
        (
            Some("20:00:00 01.02.2003"),
            r"**%H:%M:%S %d.%m.%Y**",
            "192.0.2.1x20:00:00 01.02.2003",
        ),
        (
            Some("20:00:00 01.02.2003"),
            r"**%H:%M:%S %d.%m.%Y**",
            "20:00:00 01.02.2003x192.0.2.1",
        ),
        (
            Some("*20:00:00 01.02.2003*"),
            r"\**%H:%M:%S %d.%m.%Y\**",
            "test*20:00:00 01.02.2003*test",
        ),
        (
            Some("20:00:00 01.02.2003"),
            r"%H:%M:%S %d.%m.%Y",
            "192.0.2.1 20:00:00 01.02.2003",
        ),
        (
            Some("20:00:00 01.02.2003"),
            r"%H:%M:%S %d.%m.%Y",
            "20:00:00 01.02.2003 192.0.2.1",
        ),
        (
            Some("2003-12-30 00:00:00"),
            r"%ExY-%Exm-%Exd %ExH:%ExM:%ExS",
            "0000-12-30 00:00:00 - 2003-12-30 00:00:00",
        ),
        (
            Some("20031230 010203"),
            r"%ExY%Exm%Exd %ExH%ExM%ExS",
            "text:200333 010203 | date:20031230 010203",
        ),
        (
            Some("20030101 000000"),
            "%ExY%Exm%Exd %ExH%ExM%ExS",
            "00001230 010203 - 20030101 000000",
        ),
        (
            None,
            "{^LN-BEG}%ExY%Exm%Exd %ExH%ExM%ExS",
            "00001230 010203 - 20030101 000000",
        ),
        (
            Some("20031230 010203"),
            "{^LN-BEG}%ExY%Exm%Exd %ExH%ExM%ExS",
            "20031230 010203 - 20030101 000000",
        ),
        (
            Some("20031230010203"),
            "{^LN-BEG}%ExY%Exm%Exd%ExH%ExM%ExS**",
            "2003123001020320030101000000",
        ),
        (
            Some("20031230010203"),
            "{^LN-BEG}%ExY%Exm%Exd%ExH%ExM%ExS**",
            "##2003123001020320030101000000",
        ),
        (
            Some("20031230010203"),
            "{^LN-BEG}%ExY%Exm%Exd%ExH%ExM%ExS",
            "[20031230010203]20030101000000",
        ),
    ];
    for (want, pattern, line) in cases {
        let mut dd = DateDetector::from_datepattern(pattern).expect("pattern");
        let got = date(&mut dd, line, &clock).map(|(text, _)| text);
        assert_eq!(got.as_deref(), *want, "{pattern}: {line}");
    }
}

/// A clock at `iso` (UTC) in zone UTC.
fn utc_clock(iso: &str) -> Clock {
    let now: jiff::Timestamp = iso.parse().expect("timestamp");
    Clock::fixed(TimeZone::UTC, now.as_second())
}

/// The time `dd` gives `line`, as an RFC 3339 UTC string.
fn iso_time(dd: &mut DateDetector, line: &str, clock: &Clock) -> Option<String> {
    let t = dd.find(line, clock).and_then(|f| f.time)?;
    Some(jiff::Timestamp::from_second(t as i64).ok()?.to_string())
}

/// fail2ban's `reGroupDictStrptime`: a date without a year gets the current year, or the year
/// before when that puts it more than a day after now. Nothing moves a date forward a year.
#[test]
fn year_completion_near_the_new_year() {
    // (now, line, date), each line on a fresh detector.
    let cases = [
        // Read just after midnight on Jan 1: last night's lines are from the year before.
        (
            "2027-01-01T00:00:30Z",
            "Dec 31 23:59:59",
            "2026-12-31T23:59:59Z",
        ),
        (
            "2027-01-01T00:00:30Z",
            "Jan  1 00:00:01",
            "2027-01-01T00:00:01Z",
        ),
        // Up to a day ahead is today's year (clock skew, zones).
        (
            "2027-01-01T00:00:30Z",
            "Jan  1 23:59:59",
            "2027-01-01T23:59:59Z",
        ),
        (
            "2027-01-01T00:00:30Z",
            "Jan  2 00:00:29",
            "2027-01-02T00:00:29Z",
        ),
        (
            "2027-01-01T00:00:30Z",
            "Jan  2 00:00:31",
            "2026-01-02T00:00:31Z",
        ),
        // A line from the next year read on Dec 31 (the writer's clock ahead): fail2ban keeps
        // the current year, so the date is almost a year in the past.
        (
            "2026-12-31T23:59:00Z",
            "Jan  1 00:00:01",
            "2026-01-01T00:00:01Z",
        ),
        (
            "2026-12-31T23:59:00Z",
            "Dec 31 23:59:59",
            "2026-12-31T23:59:59Z",
        ),
    ];
    for (now, date, want) in cases {
        let line = format!("{date} host sshd[1]: x");
        let mut dd = DateDetector::default_templates();
        let got = iso_time(&mut dd, &line, &utc_clock(now));
        assert_eq!(got.as_deref(), Some(want), "{line} read at {now}");
    }

    // A log read in January spanning December to January, on one detector.
    let clock = utc_clock("2027-01-05T12:00:00Z");
    let mut dd = DateDetector::default_templates();
    let lines = [
        ("Dec 30 10:00:00 host sshd[1]: x", "2026-12-30T10:00:00Z"),
        ("Dec 31 23:59:59 host sshd[1]: x", "2026-12-31T23:59:59Z"),
        ("Jan  1 00:00:00 host sshd[1]: x", "2027-01-01T00:00:00Z"),
        ("Jan  5 11:59:59 host sshd[1]: x", "2027-01-05T11:59:59Z"),
        ("Jan  6 11:00:00 host sshd[1]: x", "2027-01-06T11:00:00Z"),
        ("Jan  6 12:00:01 host sshd[1]: x", "2026-01-06T12:00:01Z"),
    ];
    for (line, want) in lines {
        assert_eq!(
            iso_time(&mut dd, line, &clock).as_deref(),
            Some(want),
            "{line}"
        );
    }

    // Feb 29 read in a year that has none: fail2ban's datetime() refuses it, no date.
    let clock = utc_clock("2026-12-31T23:59:00Z");
    assert_eq!(iso_time(&mut dd, "Feb 29 10:00:00 host x", &clock), None);
}

/// The year goes back after the zone offset is applied, and fail2ban then puts back the
/// month and day of the line (`date_result.replace(year=year-1, month=month, day=day)`),
/// keeping the hour the offset gave: `Mar 01 23:30:00 -0100` read on Feb 1 is Mar 1 00:30 UTC
/// of the year before, not Mar 2 00:30 (checked with fail2ban 1.0.2's own detector).
#[test]
fn year_completion_after_a_zone_offset_keeps_fail2bans_month_and_day() {
    let mut dd = DateDetector::from_datepattern("^%b %d %H:%M:%S %z").expect("pattern");
    let line = "Mar 01 23:30:00 -0100 host x";
    let got = iso_time(&mut dd, line, &utc_clock("2026-02-01T12:00:00Z"));
    assert_eq!(got.as_deref(), Some("2025-03-01T00:30:00Z"));
    // A shift back across the new year needs no year change.
    let line = "Jan 01 00:30:00 +0100 host x";
    let got = iso_time(&mut dd, line, &utc_clock("2026-12-30T12:00:00Z"));
    assert_eq!(got.as_deref(), Some("2025-12-31T23:30:00Z"));
}

/// Lines where the choice of template matters: the cases above, then formats, prefixes (some
/// not ASCII: fail2ban's positions count characters) and second dates mixed in a fixed
/// pseudo-random order, so that templates are reordered back and forth.
fn crafted_lines() -> Vec<String> {
    let mut lines = Vec::new();
    let ambiguous = [
        (
            "some free text 030324  0:03:59 -- 2003-03-07 17:05:01 ...",
            1,
        ),
        ("some free text 2003-03-07 17:05:01 test ...", 15),
        (
            "server mysqld[1000]: 030324  0:04:00 [Warning] Access denied ... foreign-input just some free text 2003-03-07 17:05:01 test",
            10,
        ),
        (
            "server mysqld[1020]: Sep 16 21:30:26 server mysqld: 030916 21:30:26 [Warning] Access denied",
            15,
        ),
        (
            "server mysqld[5906]: 2005-10-07 06:09:42 5907 [Warning] Access denied",
            20,
        ),
        (
            "server mysqld[5906]: 2005-10-08T15:26:18.237955 6 [Note] Access denied",
            20,
        ),
        (
            "server mysqld[1000]: 051009 10:05:30 [Warning] Access denied ...",
            50,
        ),
        ("2012/10/11 02:37:17 [error] 18434#0", 1),
        ("11/10/2012 02:37:17 [error] 18434#0", 10),
        ("2012/10/11 02:37:17 [error] 18434#0", 1),
        ("Test failure Jan 23 21:59:59 for 192.0.2.1", 1),
        ("Aug 8 11:25:50 20030f2329b8 Authentication failed", 1),
        ("[Aug 8 11:25:50] 20030f2329b8 Authentication failed", 1),
        ("Aug 8 11:25:50 2014 20030f2329b8 Authentication failed", 1),
        ("0000-12-30 00:00:00 - 2003-12-30 00:00:00", 1),
        ("text:200333 010203 | date:20031230 010203", 1),
    ];
    for (line, n) in ambiguous {
        lines.extend(std::iter::repeat_n(line.to_string(), n));
    }
    let dates = [
        "Jan 23 21:59:59",
        "Sun Jan 23 21:59:59 2005",
        "Sun Jan 23 2005 21:59:59",
        "2005/01/23 21:59:59",
        "23/01/2005 21:59:59",
        "23/Jan/2005:21:59:59 +0100",
        "01/23/2005:21:59:59",
        "2005-01-23 21:59:59,000",
        "23-Jan-2005 21:59:59.02",
        "1106513999",
        "01-23-2005 21:59:59.252",
        "2005-01-23T15:59:59-05:00",
        "20050123T215959",
        "050123 21:59:59",
        "Jan 23, 2005 9:59:59 PM",
        "[1106513999.000]",
        "audit(1106513999.000:987)",
    ];
    let prefixes = [
        "",
        "",
        "",
        "bogus-prefix ",
        "host app[12]: ",
        "x ",
        "[",
        "é ",
        "a-",
        "12 ",
    ];
    let mut seed: u64 = 2;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 33) % n as u64) as usize
    };
    for _ in 0..4000 {
        let date = dates[next(dates.len())];
        let prefix = prefixes[next(prefixes.len())];
        // Some lines carry a second date further on.
        let tail = match next(9) {
            0 => " then 2004-02-03 04:05:06",
            1 => " at Feb  3 04:05:06",
            2 => " 1106513999 x",
            3 => " [Jan 23 21:59:59] é",
            4 => " 23/01/2005 21:59:58",
            5 => " @4000000041f4104f00000000",
            6 => " 050123 21:59:58 y",
            _ => "",
        };
        let repeat = 1 + next(3);
        for _ in 0..repeat {
            lines.push(format!("{prefix}{date} sshd: failure{tail}"));
        }
    }
    lines
}

/// fail2ban-regex 1.0.2 takes the same date as logban on every crafted line (times compared;
/// `None` when it finds none). Zone UTC and the real clock on both sides.
#[test]
fn agrees_with_fail2ban_regex() {
    let Some(program) = test_support::require_program("fail2ban-regex") else {
        return;
    };
    let lines = crafted_lines();
    let log: String = lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{l} from 10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("date-selection.log");
    std::fs::write(&path, &log).expect("write log");
    let out = std::process::Command::new(program)
        .env("TZ", "UTC")
        .arg("-o")
        .arg("row")
        .arg(&path)
        .arg("^.* from <HOST>")
        .output()
        .expect("run fail2ban-regex");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut theirs = std::collections::HashMap::new();
    for row in stdout.lines().filter(|l| l.starts_with("['10.")) {
        let mut fields = row.trim_start_matches("['").split(['\'', ',', '\t']);
        let ip = fields.next().expect("address").to_string();
        let time = fields.find(|f| !f.trim().is_empty()).expect("time").trim();
        theirs.insert(ip, time.parse::<f64>().ok());
    }
    assert_eq!(theirs.len(), lines.len(), "one row per line");
    let clock = Clock::system(TimeZone::UTC);
    let mut dd = DateDetector::default_templates();
    let mut differ = Vec::new();
    for (i, line) in log.lines().enumerate() {
        let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        let ours = dd.find(line, &clock).and_then(|f| f.time);
        let want = theirs[&ip];
        let same = match (ours, want) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-3,
            (None, None) => true,
            _ => false,
        };
        if !same {
            differ.push(format!(
                "line {}: {line:?}: logban {ours:?}, fail2ban {want:?}",
                i + 1
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} lines differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
