//! fail2ban's stock filters against fail2ban's annotated sample logs, run the way fail2ban's own
//! `tests/samplestestcase.py` runs them: every filter option combination the sample asks for
//! (`# filterOptions:` / `# fileOptions:`), included files (`# addFILE:`), its time zone
//! (`CET-01CEST-02,M3.5.0,M10.5.0`) and fixed clock (1124013600) for year-less dates, all failregexes
//! checked on each line. Every `# failJSON:` line must agree: match or not, host, time, user(s),
//! attempts and any other annotated group. The test writes a report of every disagreement
//! (`$CARGO_TARGET_TMPDIR/fail2ban-conformance.txt`) and asserts the exact totals.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use logban::fail2ban::load_filter_with;
use logban::filter::{Clock, Filter, FilterBuilder, FilterMatch};
use serde_json::Value;

const TEST_NOW: i64 = 1_124_013_600;
const TEST_TZ: &str = "CET-01CEST-02,M3.5.0,M10.5.0";

/// Totals achieved; a regression (or an improvement) must update them deliberately.
const EXPECTED_CHECKS: usize = 1381;
const EXPECTED_POSITIVE: usize = 1135;
const EXPECTED_AGREE: usize = 1381;
const EXPECTED_FILTERS_LOADED: usize = 89;

fn clock() -> Clock {
    Clock::fixed(
        jiff::tz::TimeZone::posix(TEST_TZ).expect("valid POSIX TZ"),
        TEST_NOW,
    )
}

#[derive(Default)]
struct Report {
    checks: usize,
    /// Checks annotated `"match": true` (host, time... compared).
    positive: usize,
    agree: usize,
    lines: Vec<String>,
}

type FilterSlot = Result<Filter, String>;

struct SampleRun<'a> {
    filter_dir: &'a Path,
    samples: &'a Path,
    name: String,
    filters: HashMap<String, FilterSlot>,
}

impl SampleRun<'_> {
    fn filter(&mut self, key: &str, opts: &BTreeMap<String, String>) -> &mut FilterSlot {
        let path = self.filter_dir.join(format!("{}.conf", self.name));
        self.filters.entry(key.to_string()).or_insert_with(|| {
            load_filter_with(&path, opts)
                .map_err(|e| e.to_string())
                .and_then(|def| {
                    FilterBuilder::new(def)
                        .with_clock(clock())
                        .with_check_all_regex(true)
                        .build()
                        .map_err(|e| e.to_string())
                })
        })
    }

    fn run(&mut self, report: &mut Report) {
        let mut filenames = vec![self.name.clone()];
        let mut i = 0;
        let mut common: BTreeMap<String, Value> = BTreeMap::new();
        // (filter key, options) combinations in force, as in samplestestcase's `_filterTests`.
        let mut tests: Vec<(String, BTreeMap<String, Value>)> = Vec::new();
        let directive = regex::Regex::new(r"^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$")
            .expect("valid");
        while i < filenames.len() {
            let file = self.samples.join(&filenames[i]);
            i += 1;
            let bytes = std::fs::read(&file).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let lines: Vec<&str> = text.split_inclusive('\n').collect();
            let mut ignore_block = false;
            let mut n = 0;
            while n < lines.len() {
                let mut line = lines[n];
                let lnum = n + 1;
                n += 1;
                let stripped = line.trim_end_matches(['\r', '\n']);
                let mut faildata: Option<BTreeMap<String, Value>> = None;
                if let Some(caps) = directive.captures(stripped) {
                    let value: Value = serde_json::from_str(&caps[2]).unwrap_or(Value::Null);
                    match &caps[1] {
                        "fileOptions" => {
                            common = as_map(&value);
                            continue;
                        }
                        "filterOptions" => {
                            tests.clear();
                            ignore_block = false;
                            let list = match &value {
                                Value::Array(a) => a.clone(),
                                v => vec![v.clone()],
                            };
                            for item in list {
                                let mut opts = common.clone();
                                opts.extend(as_map(&item));
                                if let Some(cond) =
                                    opts.get("test.condition").and_then(Value::as_str)
                                {
                                    ignore_block = !eval_condition(cond, &self.name, &opts);
                                }
                                if !ignore_block {
                                    tests.push((self.filter_key(&opts), opts));
                                }
                            }
                            continue;
                        }
                        "addFILE" => {
                            if let Some(f) = value.as_str() {
                                filenames.push(f.to_string());
                            }
                            continue;
                        }
                        _ => {
                            faildata = Some(as_map(&value));
                            let Some(next) = lines.get(n) else { break };
                            line = next;
                            n += 1;
                        }
                    }
                } else if ignore_block || stripped.starts_with('#') || stripped.trim().is_empty() {
                    continue;
                }
                if ignore_block {
                    continue;
                }
                if tests.is_empty() {
                    tests.push((self.name.clone(), BTreeMap::new()));
                }
                let mut line = line.trim_end_matches(['\r', '\n']).to_string();
                for (key, opts) in tests.clone() {
                    if let Some(fd) = &faildata
                        && let Some(c) = fd.get("constraint").and_then(Value::as_str)
                        && !eval_condition(c, &self.name, &opts)
                    {
                        continue;
                    }
                    let filter_opts: BTreeMap<String, String> = opts
                        .iter()
                        .filter(|(k, _)| !k.starts_with("test."))
                        .map(|(k, v)| (k.clone(), value_str(v)))
                        .collect();
                    let journal = opts.get("logtype").and_then(Value::as_str) == Some("journal");
                    if journal && let Some(p) = opts.get("test.prefix-line").and_then(Value::as_str)
                    {
                        line = format!("{p}{line}");
                    }
                    let slot = self.filter(&key, &filter_opts);
                    let verdict = match slot {
                        Err(e) => Err(format!("filter does not load: {e}")),
                        Ok(f) => {
                            let found: Vec<FilterMatch> = if journal {
                                f.process_line_at(&line, TEST_NOW as f64)
                            } else {
                                f.process_line(&line)
                            }
                            .into_iter()
                            .filter(|m| m.id.is_some() && !m.nofail)
                            .collect();
                            match &faildata {
                                Some(fd) => compare(fd, &found),
                                None if found.is_empty() => Ok(()),
                                None => Err("unannotated line matched".into()),
                            }
                        }
                    };
                    if faildata.is_none() {
                        continue;
                    }
                    report.checks += 1;
                    if faildata
                        .as_ref()
                        .and_then(|fd| fd.get("match"))
                        .and_then(Value::as_bool)
                        == Some(true)
                    {
                        report.positive += 1;
                    }
                    match verdict {
                        Ok(()) => report.agree += 1,
                        Err(reason) => report.lines.push(format!(
                            "{key} {}:{lnum}: {reason}\n    line: {line}",
                            filenames[i - 1]
                        )),
                    }
                }
            }
        }
    }

    fn filter_key(&self, opts: &BTreeMap<String, Value>) -> String {
        if let Some(n) = opts.get("test.filter-name").and_then(Value::as_str) {
            return format!("{}{n}", self.name);
        }
        let f: BTreeMap<&String, &Value> = opts
            .iter()
            .filter(|(k, _)| !k.starts_with("test."))
            .collect();
        if f.is_empty() {
            self.name.clone()
        } else {
            format!(
                "{}{}",
                self.name,
                serde_json::to_string(&f).unwrap_or_default()
            )
        }
    }
}

fn as_map(v: &Value) -> BTreeMap<String, Value> {
    v.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn value_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The Python expressions the samples use: `name == 'x'` and `opts.get('mode') != 'y'`.
fn eval_condition(cond: &str, name: &str, opts: &BTreeMap<String, Value>) -> bool {
    let (lhs, rhs, eq) = if let Some((l, r)) = cond.split_once("!=") {
        (l, r, false)
    } else if let Some((l, r)) = cond.split_once("==") {
        (l, r, true)
    } else {
        panic!("unsupported condition {cond:?}");
    };
    let rhs = rhs.trim().trim_matches(['\'', '"']);
    let lhs = lhs.trim();
    let value = if lhs == "name" {
        Some(name.to_string())
    } else if let Some(k) = lhs
        .strip_prefix("opts.get(")
        .and_then(|s| s.strip_suffix(')'))
    {
        opts.get(k.trim_matches(['\'', '"'])).map(value_str)
    } else {
        panic!("unsupported condition {cond:?}");
    };
    (value.as_deref() == Some(rhs)) == eq
}

fn compare(fd: &BTreeMap<String, Value>, found: &[FilterMatch]) -> Result<(), String> {
    let want_match = fd.get("match").and_then(Value::as_bool).unwrap_or(false);
    if found.is_empty() {
        return if want_match {
            Err("not matched, should match".into())
        } else {
            Ok(())
        };
    }
    if !want_match {
        return Err(format!("matched (regex {}), should not", found[0].regex));
    }
    if found.len() > 1 {
        return Err(format!(
            "several regexes matched: {:?}",
            found.iter().map(|m| m.regex).collect::<Vec<_>>()
        ));
    }
    let m = &found[0];
    for (k, v) in fd {
        if matches!(k.as_str(), "time" | "match" | "desc" | "constraint") {
            continue;
        }
        let got: Option<Value> = match k.as_str() {
            "users" => Some(Value::from(m.users.clone())),
            _ => m.groups.get(k).map(Value::from).or(match k.as_str() {
                "host" => m.id.clone().map(Value::from),
                "attempts" => Some(Value::from(m.lines.len())),
                _ => None,
            }),
        };
        if !same_value(k, v, got.as_ref()) {
            return Err(format!("{k}: want {v}, got {got:?}"));
        }
    }
    if let Some(t) = fd.get("time").and_then(Value::as_str) {
        let want = json_time(t).ok_or_else(|| format!("bad time {t}"))?;
        match m.time {
            Some(got) if (got - want).abs() < 1e-3 => {}
            got => return Err(format!("time: want {t} ({want}), got {got:?}")),
        }
    }
    Ok(())
}

fn same_value(key: &str, want: &Value, got: Option<&Value>) -> bool {
    let Some(got) = got else {
        return want.is_null();
    };
    match (want, got) {
        (Value::Array(w), Value::Array(g)) => {
            let mut w: Vec<String> = w.iter().map(value_str).collect();
            let mut g: Vec<String> = g.iter().map(value_str).collect();
            w.sort();
            g.sort();
            w == g
        }
        _ => {
            let (w, g) = (value_str(want), value_str(got));
            if key == "host"
                && let (Ok(a), Ok(b)) = (w.parse::<IpAddr>(), g.parse::<IpAddr>())
            {
                return a == b;
            }
            w == g
        }
    }
}

/// A sample's local time (`2005-08-14T12:00:00[.123]`) in the test zone, as Unix seconds.
fn json_time(t: &str) -> Option<f64> {
    let (main, frac) = match t.split_once('.') {
        Some((m, f)) => (m, format!("0.{f}").parse::<f64>().ok()?),
        None => (t, 0.0),
    };
    // Python's strptime takes single-digit fields (`2005-03-7T02:09:33`).
    let (date, time) = main.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let dt = jiff::civil::DateTime::new(
        i16::try_from(d[0]).ok()?,
        i8::try_from(d[1]).ok()?,
        i8::try_from(d[2]).ok()?,
        i8::try_from(t[0]).ok()?,
        i8::try_from(t[1]).ok()?,
        i8::try_from(t[2]).ok()?,
        0,
    )
    .ok()?;
    let tz = jiff::tz::TimeZone::posix(TEST_TZ).ok()?;
    let ts = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
    Some(ts.as_second() as f64 + frac)
}

#[test]
fn stock_filters_agree_with_sample_logs() {
    let Some(filter_dir) = test_support::require_env("FAIL2BAN_FILTER_DIR", "fail2ban's filter.d")
    else {
        return;
    };
    let Some(samples) =
        test_support::require_env("FAIL2BAN_SAMPLE_LOGS", "fail2ban's tests/files/logs")
    else {
        return;
    };
    let filter_dir = PathBuf::from(filter_dir);
    let samples = PathBuf::from(samples);
    let mut names: Vec<String> = std::fs::read_dir(&filter_dir)
        .expect("filter dir readable")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".conf")
                // `common.conf` and `*-common.conf` are include files, not filters.
                .filter(|s| *s != "common" && !s.ends_with("-common") && !s.starts_with('.'))
                .map(str::to_string)
        })
        .collect();
    names.sort();

    let mut out = String::new();
    let mut loaded = 0;
    let mut backtracking = Vec::new();
    for name in &names {
        let built = load_filter_with(&filter_dir.join(format!("{name}.conf")), &BTreeMap::new())
            .map_err(|e| e.to_string())
            .and_then(|d| FilterBuilder::new(d).build().map_err(|e| e.to_string()));
        match built {
            Ok(f) => {
                loaded += 1;
                let bt = f.backtracking_regexes();
                if !bt.is_empty() {
                    backtracking.push(format!("{name}: failregex {bt:?}"));
                }
            }
            Err(e) => writeln!(out, "LOAD FAILURE {name}: {e}").expect("write"),
        }
    }
    let mut report = Report::default();
    for name in &names {
        if !samples.join(name).is_file() {
            continue;
        }
        SampleRun {
            filter_dir: &filter_dir,
            samples: &samples,
            name: name.clone(),
            filters: HashMap::new(),
        }
        .run(&mut report);
    }
    writeln!(
        out,
        "filters: {} loaded of {}\nfailJSON checks: {} agree of {} ({:.2}%), {} of them annotated as matches\nbacktracking (budgeted) regexes:\n  {}\n\ndisagreements:",
        loaded,
        names.len(),
        report.agree,
        report.checks,
        100.0 * report.agree as f64 / report.checks.max(1) as f64,
        report.positive,
        backtracking.join("\n  ")
    )
    .expect("write");
    for l in &report.lines {
        writeln!(out, "{l}").expect("write");
    }
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fail2ban-conformance.txt");
    std::fs::write(&path, &out).expect("report written");
    println!("{out}\nreport: {}", path.display());

    assert_eq!(loaded, names.len(), "every stock filter loads");
    assert_eq!(loaded, EXPECTED_FILTERS_LOADED);
    assert!(
        report.agree * 100 >= report.checks * 97,
        "at least 97% agree"
    );
    assert_eq!(
        (report.checks, report.positive, report.agree),
        (EXPECTED_CHECKS, EXPECTED_POSITIVE, EXPECTED_AGREE)
    );
}
