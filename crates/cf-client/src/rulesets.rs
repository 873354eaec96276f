//! Rate limiting at the edge: rules of the zone's `http_ratelimit` phase entrypoint
//! (Rulesets API), managed idempotently by their `ref`.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{Call, Client};
use crate::{Error, Result};

/// Cloudflare's code for "the entrypoint ruleset does not exist yet".
const CODE_NO_ENTRYPOINT: u64 = 10003;

/// A rate-limiting rule, identified by its `reference` (Cloudflare's `ref`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitRule {
    /// Stable identity across runs (`ref`).
    pub reference: String,
    /// Shown in the dashboard.
    pub description: String,
    /// Which requests count (Cloudflare's rules language).
    pub expression: String,
    /// `block`, `managed_challenge`, `js_challenge`, `challenge`, `log`.
    pub action: String,
    /// Counting keys, e.g. `["cf.colo.id", "ip.src"]`.
    pub characteristics: Vec<String>,
    /// Counting period in seconds.
    pub period: u32,
    /// Requests allowed per period.
    pub requests_per_period: u32,
    /// How long the action lasts, seconds.
    pub mitigation_timeout: u32,
}

impl RateLimitRule {
    /// Blocks a client (per IP and data centre) that sends more than `requests` POSTs to
    /// `path` within `period` seconds, for `timeout` seconds.
    pub fn login_limit(
        reference: &str,
        path: &str,
        requests: u32,
        period: u32,
        timeout: u32,
    ) -> Self {
        RateLimitRule {
            reference: reference.to_owned(),
            description: format!("hostguard: limit POST {path}"),
            expression: format!(
                "(http.request.uri.path eq \"{}\" and http.request.method eq \"POST\")",
                path.replace('\\', "\\\\").replace('"', "\\\"")
            ),
            action: "block".into(),
            characteristics: vec!["cf.colo.id".into(), "ip.src".into()],
            period,
            requests_per_period: requests,
            mitigation_timeout: timeout,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "ref": self.reference,
            "description": self.description,
            "expression": self.expression,
            "action": self.action,
            "enabled": true,
            "ratelimit": {
                "characteristics": self.characteristics,
                "period": self.period,
                "requests_per_period": self.requests_per_period,
                "mitigation_timeout": self.mitigation_timeout,
            },
        })
    }

    /// True if Cloudflare's rule `rule` already says what `self` says.
    fn matches(&self, rule: &Value) -> bool {
        let want = self.to_json();
        [
            "ref",
            "description",
            "expression",
            "action",
            "enabled",
            "ratelimit",
        ]
        .iter()
        .all(|k| rule.get(*k) == want.get(*k))
    }
}

/// What [`Client::ensure_rate_limit_rules`] did, by rule `ref`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RulesReport {
    /// Rules added.
    pub added: Vec<String>,
    /// Rules changed.
    pub updated: Vec<String>,
    /// Managed rules removed (their `ref` starts with the managed prefix but is not desired).
    pub removed: Vec<String>,
    /// Rules already right.
    pub unchanged: Vec<String>,
}

impl RulesReport {
    /// True if nothing was written.
    pub fn is_unchanged(&self) -> bool {
        self.added.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }
}

#[derive(Deserialize)]
struct Ruleset {
    #[serde(default)]
    rules: Vec<Value>,
}

fn entrypoint_path(zone_id: &str) -> String {
    format!("/zones/{zone_id}/rulesets/phases/http_ratelimit/entrypoint")
}

impl Client {
    /// The rules of the zone's `http_ratelimit` entrypoint, as JSON (empty if the zone has no
    /// entrypoint yet).
    pub async fn rate_limit_rules(&self, zone_id: &str) -> Result<Vec<Value>> {
        match self
            .send_as::<Ruleset>(Call::get(entrypoint_path(zone_id)))
            .await
        {
            Ok(ruleset) => Ok(ruleset.rules),
            Err(e @ Error::Api { status, .. })
                if status == 404 || e.has_code(CODE_NO_ENTRYPOINT) =>
            {
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Makes the entrypoint hold exactly `desired` among the rules whose `ref` starts with
    /// `managed_prefix`; rules with other refs (made by hand) are kept as they are and in
    /// place. Writes nothing when everything is already right.
    pub async fn ensure_rate_limit_rules(
        &self,
        zone_id: &str,
        managed_prefix: &str,
        desired: &[RateLimitRule],
    ) -> Result<RulesReport> {
        for rule in desired {
            if !rule.reference.starts_with(managed_prefix) {
                return Err(Error::InvalidConfig {
                    field: "rate limit rule ref".into(),
                    reason: format!(
                        "`{}` does not start with the managed prefix `{managed_prefix}`",
                        rule.reference
                    ),
                });
            }
        }
        let current = self.rate_limit_rules(zone_id).await?;
        let mut report = RulesReport::default();
        let mut rules = Vec::new();
        for rule in &current {
            let reference = rule.get("ref").and_then(Value::as_str).unwrap_or("");
            if !reference.starts_with(managed_prefix) || reference.is_empty() {
                rules.push(strip_read_only(rule));
                continue;
            }
            match desired.iter().find(|d| d.reference == reference) {
                Some(want) if want.matches(rule) => {
                    report.unchanged.push(reference.to_owned());
                    rules.push(strip_read_only(rule));
                }
                Some(want) => {
                    report.updated.push(reference.to_owned());
                    rules.push(want.to_json());
                }
                None => report.removed.push(reference.to_owned()),
            }
        }
        for want in desired {
            let present = current
                .iter()
                .any(|r| r.get("ref").and_then(Value::as_str) == Some(&want.reference));
            if !present {
                report.added.push(want.reference.clone());
                rules.push(want.to_json());
            }
        }
        if !report.is_unchanged() {
            let call = Call::new(Method::PUT, entrypoint_path(zone_id)).body(json!({
                "name": "default",
                "description": "",
                "rules": rules,
            }));
            self.send(call).await?;
        }
        Ok(report)
    }
}

/// A rule as Cloudflare returned it, without the fields it sets itself.
fn strip_read_only(rule: &Value) -> Value {
    let mut rule = rule.clone();
    if let Value::Object(map) = &mut rule {
        for key in ["version", "last_updated", "categories"] {
            map.remove(key);
        }
    }
    rule
}
