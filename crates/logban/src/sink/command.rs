//! A sink that runs a program per action, like fail2ban's actions but never through a shell.
//!
//! Commands are argv templates. Placeholders may appear anywhere inside an argument (not in the
//! program name) and are replaced by validated values only:
//!
//! | placeholder | value |
//! |---|---|
//! | `<ip>` | the address (`192.0.2.1`), or the prefix in CIDR form when grouping (`2001:db8::/64`) |
//! | `<cidr>` | always CIDR (`192.0.2.1/32`) |
//! | `<family>` | `inet` or `inet6` |
//! | `<jail>` | the jail's name (letters, digits, `-`, `_`, `.`) |
//! | `<bantime>` | seconds left, `-1` for permanent (ban only) |
//! | `<ports>` | the jail's ports, `22,8000:8100`, empty for all (prepare only) |
//! | `<protocol>` | `tcp`, `udp` or `tcp,udp` (prepare only) |
//!
//! Because the sink cannot ask a program what it holds, [`list`](BanSink::list) reports the bans
//! whose command succeeded and whose time has not run out.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;

use super::{BanAction, BanSink, SinkJail, run_argv, target_text};
use crate::jail::Protocol;
use crate::{Error, Result};

const PLACEHOLDERS: [&str; 7] = [
    "<ip>",
    "<cidr>",
    "<family>",
    "<jail>",
    "<bantime>",
    "<ports>",
    "<protocol>",
];

/// Builder for [`CommandSink`].
#[derive(Debug, Clone, Default)]
pub struct CommandSinkBuilder {
    prepare: Vec<String>,
    ban: Vec<String>,
    unban: Vec<String>,
    cleanup: Vec<String>,
    timeout: Option<Duration>,
}

fn argv<S: AsRef<str>>(args: impl IntoIterator<Item = S>) -> Vec<String> {
    args.into_iter().map(|s| s.as_ref().to_owned()).collect()
}

impl CommandSinkBuilder {
    /// The command run once per jail by `prepare` (optional).
    pub fn with_prepare<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.prepare = argv(args);
        self
    }
    /// The command that bans one target (required).
    pub fn with_ban<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.ban = argv(args);
        self
    }
    /// The command that unbans one target (required).
    pub fn with_unban<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.unban = argv(args);
        self
    }
    /// The command run per prepared jail by `cleanup` (optional).
    pub fn with_cleanup<S: AsRef<str>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.cleanup = argv(args);
        self
    }
    /// How long one command may run (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Validates the templates: ban and unban present, no placeholder in program names, no
    /// unknown placeholders.
    pub fn build(self) -> Result<CommandSink> {
        for (what, template, required) in [
            ("ban", &self.ban, true),
            ("unban", &self.unban, true),
            ("prepare", &self.prepare, false),
            ("cleanup", &self.cleanup, false),
        ] {
            check_template(what, template, required)?;
        }
        Ok(CommandSink {
            timeout: self.timeout.unwrap_or(Duration::from_secs(30)),
            templates: self,
            applied: super::BanTable::default(),
            jails: Mutex::new(Vec::new()),
        })
    }
}

fn check_template(what: &str, template: &[String], required: bool) -> Result<()> {
    let bad = |reason: String| Error::InvalidConfig {
        field: format!("command sink {what}"),
        reason,
    };
    let Some(program) = template.first() else {
        return if required {
            Err(bad("a command is required".into()))
        } else {
            Ok(())
        };
    };
    if program.is_empty() || program.contains('<') {
        return Err(bad(format!("program `{program}` must be a plain path")));
    }
    for arg in template {
        for (start, _) in arg.match_indices('<') {
            let tail = &arg[start..];
            let Some(end) = tail.find('>') else { continue };
            let token = &tail[..=end];
            let name = &token[1..end];
            let looks_like_placeholder =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if looks_like_placeholder && !PLACEHOLDERS.contains(&token) {
                return Err(bad(format!("unknown placeholder {token} in `{arg}`")));
            }
        }
    }
    Ok(())
}

/// Runs argv commands for bans; see the module docs for placeholders.
#[derive(Debug)]
pub struct CommandSink {
    templates: CommandSinkBuilder,
    timeout: Duration,
    applied: super::BanTable,
    jails: Mutex<Vec<SinkJail>>,
}

impl CommandSink {
    /// Runs the ban or unban command of one action.
    async fn run_action(&self, action: &BanAction) -> Result<()> {
        let target = action.target();
        let mut values = target_values(action.jail(), &target);
        match action {
            BanAction::Ban { timeout, .. } => {
                let secs = timeout.map_or_else(|| "-1".to_owned(), |t| t.as_secs().to_string());
                values.push(("<bantime>", secs));
                self.run(&self.templates.ban, &values).await
            }
            BanAction::Unban { .. } => self.run(&self.templates.unban, &values).await,
        }
    }

    /// Starts a builder.
    pub fn builder() -> CommandSinkBuilder {
        CommandSinkBuilder::default()
    }

    async fn run(&self, template: &[String], values: &[(&str, String)]) -> Result<()> {
        let argv: Vec<String> = template
            .iter()
            .enumerate()
            .map(|(i, arg)| {
                if i == 0 {
                    return arg.clone();
                }
                values
                    .iter()
                    .fold(arg.clone(), |acc, (key, value)| acc.replace(key, value))
            })
            .collect();
        run_argv("command", &argv, None, self.timeout)
            .await
            .map(drop)
    }
}

fn target_values(jail: &str, target: &IpNet) -> Vec<(&'static str, String)> {
    let family = match target {
        IpNet::V4(_) => "inet",
        IpNet::V6(_) => "inet6",
    };
    vec![
        ("<ip>", target_text(target)),
        ("<cidr>", target.to_string()),
        ("<family>", family.to_owned()),
        ("<jail>", jail.to_owned()),
    ]
}

#[async_trait]
impl BanSink for CommandSink {
    /// Applies the set as one unit: nothing runs unless every jail name is valid, and when a
    /// command fails, the bans this set already applied are lifted again (newest first). An
    /// unban cannot be undone (the remaining ban time is not known here): one that ran before
    /// the failure is recorded as applied and named in the error, with any ban whose undoing
    /// failed, so nothing is half-applied silently.
    async fn apply(&self, actions: &[BanAction]) -> Result<()> {
        for action in actions {
            crate::jail::validate_jail_name(action.jail())?;
        }
        for (done, action) in actions.iter().enumerate() {
            let Err(failure) = self.run_action(action).await else {
                continue;
            };
            if done == 0 {
                // Nothing of the set ran: the command's own error says it all.
                return Err(failure);
            }
            let mut undone = 0;
            let mut still_applied = Vec::new();
            for earlier in actions[..done].iter().rev() {
                let lifted = match earlier {
                    BanAction::Ban { jail, target, .. } => self
                        .run(&self.templates.unban, &target_values(jail, target))
                        .await
                        .is_ok(),
                    BanAction::Unban { .. } => false,
                };
                if lifted {
                    undone += 1;
                } else {
                    still_applied.push(earlier.clone());
                }
            }
            self.applied.apply(&still_applied);
            let kept: Vec<String> = still_applied
                .iter()
                .map(|a| format!("{} {}", a.jail(), a.target()))
                .collect();
            return Err(Error::Sink {
                sink: "command".into(),
                reason: format!(
                    "{failure}; {undone} earlier change(s) of this set undone; still applied: [{}]",
                    kept.join(", ")
                ),
            });
        }
        // Recorded once every command succeeded: `list` reports what was applied.
        self.applied.apply(actions);
        Ok(())
    }

    async fn list(&self, jail: &str) -> Result<Vec<IpNet>> {
        Ok(self.applied.list(jail))
    }

    async fn prepare(&self, jail: &SinkJail) -> Result<()> {
        if !self.templates.prepare.is_empty() {
            let ports = super::join_ports(&jail.ports, ":", ",");
            let protocol = match jail.protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
                Protocol::TcpAndUdp => "tcp,udp",
            };
            let values = [
                ("<jail>", jail.name.clone()),
                ("<ports>", ports),
                ("<protocol>", protocol.to_owned()),
            ];
            self.run(&self.templates.prepare, &values).await?;
        }
        let mut jails = self.jails.lock().unwrap_or_else(|e| e.into_inner());
        if !jails.contains(jail) {
            jails.push(jail.clone());
        }
        Ok(())
    }

    async fn cleanup(&self) -> Result<()> {
        let jails = std::mem::take(&mut *self.jails.lock().unwrap_or_else(|e| e.into_inner()));
        if !self.templates.cleanup.is_empty() {
            for jail in &jails {
                self.run(&self.templates.cleanup, &[("<jail>", jail.name.clone())])
                    .await?;
            }
        }
        self.applied.clear();
        Ok(())
    }

    fn name(&self) -> &str {
        "command"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_validated() {
        let ok = CommandSink::builder()
            .with_ban(["/bin/true", "--add=<ip>", "<bantime>"])
            .with_unban(["/bin/true", "<cidr>", "<family>", "a<b"])
            .build();
        assert!(ok.is_ok());
        for bad in [
            CommandSink::builder().with_unban(["/bin/true"]),
            CommandSink::builder().with_ban(["/bin/true"]),
            CommandSink::builder()
                .with_ban(["<ip>", "x"])
                .with_unban(["/bin/true"]),
            CommandSink::builder()
                .with_ban(["/bin/true", "<host>"])
                .with_unban(["/bin/true"]),
        ] {
            assert!(matches!(bad.build(), Err(Error::InvalidConfig { .. })));
        }
    }

    /// The command sees exactly one argument per template argument, whatever the values.
    #[tokio::test]
    async fn arguments_are_substituted_without_a_shell() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("calls");
        let script = format!(
            "for a in \"$@\"; do printf '[%s]' \"$a\"; done >> {}; echo >> {}",
            log.display(),
            log.display()
        );
        let sink = CommandSink::builder()
            .with_ban([
                "/bin/sh",
                "-c",
                &script,
                "sh",
                "ban <jail>",
                "<ip>;x",
                "<bantime>",
            ])
            .with_unban([
                "/bin/sh", "-c", &script, "sh", "unban", "<cidr>", "<family>",
            ])
            .build()
            .expect("valid");
        let v6: IpNet = "2001:db8::/64".parse().expect("net");
        sink.ban("web", v6, Some(Duration::from_secs(90)))
            .await
            .expect("ban");
        sink.unban("web", "192.0.2.1/32".parse().expect("net"))
            .await
            .expect("unban");
        let calls = std::fs::read_to_string(&log).expect("log");
        assert_eq!(
            calls,
            "[ban web][2001:db8::/64;x][90]\n[unban][192.0.2.1/32][inet]\n"
        );
    }

    #[tokio::test]
    async fn failing_command_is_not_recorded() {
        let sink = CommandSink::builder()
            .with_ban(["/bin/false"])
            .with_unban(["/bin/true"])
            .build()
            .expect("valid");
        let target: IpNet = "192.0.2.1/32".parse().expect("net");
        let err = sink.ban("j", target, None).await.expect_err("false fails");
        assert!(matches!(err, Error::Sink { .. }), "{err}");
        assert!(sink.list("j").await.expect("list").is_empty());
        let missing = CommandSink::builder()
            .with_ban(["/nonexistent/ban"])
            .with_unban(["/bin/true"])
            .build()
            .expect("valid");
        assert!(matches!(
            missing.ban("j", target, None).await,
            Err(Error::Spawn { .. })
        ));
    }

    /// A set whose third ban fails: the two bans before it are lifted again, newest first, and
    /// nothing is recorded as applied; an unban that ran before a failure is named.
    #[tokio::test]
    async fn a_failing_set_is_undone_or_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("calls");
        let script = format!(
            "echo \"$0 $1\" >> {}; test \"$1\" != 192.0.2.3",
            log.display()
        );
        let sink = CommandSink::builder()
            .with_ban(["/bin/sh", "-c", &script, "ban", "<ip>"])
            .with_unban(["/bin/sh", "-c", &script, "unban", "<ip>"])
            .build()
            .expect("valid");
        let ban = |ip: &str| BanAction::Ban {
            jail: "j".into(),
            target: format!("{ip}/32").parse().expect("net"),
            timeout: None,
        };
        let err = sink
            .apply(&[ban("192.0.2.1"), ban("192.0.2.2"), ban("192.0.2.3")])
            .await
            .expect_err("the third ban fails");
        assert!(
            err.to_string()
                .contains("2 earlier change(s) of this set undone"),
            "{err}"
        );
        let calls = std::fs::read_to_string(&log).expect("log");
        assert_eq!(
            calls,
            "ban 192.0.2.1\nban 192.0.2.2\nban 192.0.2.3\nunban 192.0.2.2\nunban 192.0.2.1\n"
        );
        assert!(sink.list("j").await.expect("list").is_empty());

        let unban = BanAction::Unban {
            jail: "j".into(),
            target: "192.0.2.9/32".parse().expect("net"),
        };
        let err = sink
            .apply(&[unban, ban("192.0.2.3")])
            .await
            .expect_err("fails");
        assert!(
            err.to_string().contains("still applied: [j 192.0.2.9/32]"),
            "{err}"
        );
    }

    #[cfg(feature = "conformance")]
    #[tokio::test]
    async fn command_sink_conforms() {
        let sink = CommandSink::builder()
            .with_ban(["/bin/true", "<ip>"])
            .with_unban(["/bin/true", "<ip>"])
            .build()
            .expect("valid");
        crate::conformance::run_all(&sink).await;
    }
}
