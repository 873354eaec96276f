//! The TOML configuration: a full file loads; each mistake is named by line and key.

mod support;

use std::path::Path;
use std::time::Duration;

use healthcheck::Config;
use support::provider;

const FULL: &str = r#"
host = "web1"
timeout = "2s"
flap = { needed = 2, window = 3 }

[serve]
listen = "127.0.0.1:9108"
interval = "30s"

[[check]]
name = "root-disk"
kind = "disk"
path = "/"
warn = "10:"
crit = "5:"

[[check]]
name = "inodes"
kind = "disk"
path = "/"
metric = "inodes_free_percent"
crit = "5:"

[[check]]
name = "memory"
kind = "memory"
warn = "10:"

[[check]]
name = "swap"
kind = "swap"

[[check]]
name = "load"
kind = "load"
warn = "2"
crit = "4"

[[check]]
name = "ssh"
kind = "tcp"
address = "127.0.0.1:22"
timeout = "500ms"

[[check]]
name = "site"
kind = "http"
url = "https://example.invalid/"
expect_status = [200, 301]
body_contains = "Welcome"

[[check]]
name = "cert"
kind = "tls"
address = "example.invalid:443"
server_name = "www.example.invalid"
warn = "14:"
crit = "3:"
flap = { needed = 1, window = 1 }

[[check]]
name = "nginx-proc"
kind = "process"
pidfile = "/run/nginx.pid"

[[check]]
name = "nginx"
kind = "nginx"
url = "http://127.0.0.1/nginx-status"

[[check]]
name = "fpm"
kind = "php_fpm"
url = "http://127.0.0.1/fpm-status"
crit = "10"

[[check]]
name = "db"
kind = "mysql"
address = "127.0.0.1:3306"
user = "monitor"
password = "secret"

[[check]]
name = "backup"
kind = "file"
path = "/var/lib/hostguard/backup-status.json"
warn = "93600"

[[alert]]
kind = "webhook"
url = "https://hooks.example.invalid/health"
attempts = 5

[[alert]]
kind = "command"
argv = ["/usr/local/bin/page", "--team", "ops"]
timeout = "20s"
"#;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("health.toml"), provider()).map_err(|e| e.to_string())
}

#[test]
fn full_config_loads() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.host.as_deref(), Some("web1"));
    assert_eq!(c.checks.len(), 13);
    assert_eq!(c.sinks.len(), 2);
    assert_eq!(c.listen, "127.0.0.1:9108");
    assert_eq!(c.interval, Duration::from_secs(30));
    let ssh = c.checks.iter().find(|e| e.name() == "ssh").unwrap();
    assert_eq!(ssh.timeout(), Duration::from_millis(500));
    assert_eq!(c.checks[0].timeout(), Duration::from_secs(2));
    assert_eq!(c.checks[0].check().kind(), "disk");
    assert!(
        !format!("{c:?}").contains("secret"),
        "the password must not show in Debug"
    );
    c.monitor().unwrap();
}

/// Replaces the first occurrence of `from` in FULL, parses, and returns the error.
fn error_after(from: &str, to: &str) -> String {
    assert!(FULL.contains(from), "{from}");
    parse(&FULL.replacen(from, to, 1)).unwrap_err()
}

fn line_of(needle: &str) -> usize {
    FULL[..FULL.find(needle).unwrap()].lines().count() + 1
}

#[test]
fn errors_name_line_and_key() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (replace, with, key named, what is said)
        (
            "warn = \"10:\"\ncrit = \"5:\"",
            "warn = \"20:10\"\ncrit = \"5:\"",
            "key `warn`",
            "start is greater than end",
        ),
        (
            "crit = \"4\"",
            "crit = \"x\"",
            "key `crit`",
            "`x` is not a number",
        ),
        (
            "timeout = \"500ms\"",
            "timeout = \"soon\"",
            "key `timeout`",
            "`soon` is not a duration",
        ),
        (
            "kind = \"swap\"",
            "kind = \"swapp\"",
            "key `kind`",
            "unknown kind `swapp`",
        ),
        (
            "address = \"127.0.0.1:22\"",
            "address = \"127.0.0.1\"",
            "key `address`",
            "not host:port",
        ),
        (
            "pidfile = \"/run/nginx.pid\"",
            "path = \"/\"\npidfile = \"/run/nginx.pid\"",
            "key `path`",
            "does not apply to kind `process`",
        ),
        (
            "metric = \"inodes_free_percent\"",
            "metric = \"inodes\"",
            "key `metric`",
            "kind `disk` has no metric `inodes`",
        ),
        (
            "listen = \"127.0.0.1:9108\"",
            "listen = \"localhost\"",
            "key `serve.listen`",
            "`localhost`",
        ),
        (
            "url = \"http://127.0.0.1/nginx-status\"",
            "url = \"gopher://x/\"",
            "key `url`",
            "must be http or https",
        ),
        (
            "argv = [\"/usr/local/bin/page\", \"--team\", \"ops\"]",
            "argv = []",
            "key `argv`",
            "needs a program",
        ),
        (
            "flap = { needed = 1, window = 1 }",
            "flap = { needed = 3, window = 2 }",
            "key `flap`",
            "needed <= window",
        ),
    ];
    for (from, to, key, said) in cases {
        let e = error_after(from, to);
        let line = line_of(from);
        assert!(
            e.starts_with(&format!("health.toml: line {line}: {key}: ")),
            "{from} -> {e}"
        );
        assert!(e.contains(said), "{from} -> {e}");
    }
}

#[test]
fn syntax_and_schema_errors_name_the_line() {
    // A key no check has: toml names it, with its line.
    let e = error_after("body_contains = \"Welcome\"", "body_contain = \"Welcome\"");
    assert!(
        e.contains(&format!("line {}", line_of("body_contains")))
            && e.contains("unknown field `body_contain`"),
        "{e}"
    );
    let e = error_after("expect_status = [200, 301]", "expect_status = [200, \"x\"]");
    assert!(
        e.contains(&format!("line {}", line_of("expect_status"))),
        "{e}"
    );
    let e = parse("[[check]]\nname = \"x\"\n").unwrap_err();
    assert!(
        e.contains("line 1") && e.contains("missing field `kind`"),
        "{e}"
    );
    let e = parse("[[check]]\nname = \"x\"\nkind = \"tcp\"\n").unwrap_err();
    assert!(
        e.contains("line 1: key `address`: is required for kind `tcp`"),
        "{e}"
    );
    let e = parse("[[check]]\nname = \"a b\"\nkind = \"memory\"\n").unwrap_err();
    assert!(e.contains("line 2: key `name`"), "{e}");
    let e = parse(
        "[[check]]\nname = \"m\"\nkind = \"memory\"\n[[check]]\nname = \"m\"\nkind = \"swap\"\n",
    )
    .unwrap_err();
    assert!(
        e.contains("line 5: key `name`: a check named `m` already exists"),
        "{e}"
    );
    let e = parse("host = \n").unwrap_err();
    assert!(e.contains("line 1"), "{e}");
    let e = Config::load(Path::new("/nonexistent/health.toml"), provider())
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/health.toml"), "{e}");
}
