//! IP access rules at zone and account level: create, list with filters, delete.

use futures::{Stream, TryStreamExt};
use ipnet::IpNet;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Result;
use crate::client::{Call, Client};

/// Where an access rule applies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// One zone (by id).
    Zone(String),
    /// Every zone of an account (by id).
    Account(String),
}

impl Scope {
    fn rules_path(&self) -> String {
        match self {
            Scope::Zone(id) => format!("/zones/{id}/firewall/access_rules/rules"),
            Scope::Account(id) => format!("/accounts/{id}/firewall/access_rules/rules"),
        }
    }
}

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AccessMode {
    /// Block the address.
    Block,
    /// Show a challenge.
    Challenge,
    /// A managed challenge.
    ManagedChallenge,
    /// A JavaScript challenge.
    JsChallenge,
    /// Let it through.
    Whitelist,
}

/// What a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AccessTarget {
    /// `ip`, `ip6`, `ip_range`, `asn`, `country`.
    pub target: String,
    /// The address, range, ASN or country code.
    pub value: String,
}

impl AccessTarget {
    /// The target for an address or prefix: `ip` (IPv4 host), `ip6` (IPv6 host), `ip_range`
    /// (a prefix; Cloudflare takes IPv4 /16 and /24, IPv6 /32, /48 and /64).
    pub fn for_net(net: &IpNet) -> Self {
        let host = net.prefix_len() == net.max_prefix_len();
        let (target, value) = match (net, host) {
            (IpNet::V4(n), true) => ("ip", n.addr().to_string()),
            (IpNet::V6(n), true) => ("ip6", n.addr().to_string()),
            (net, false) => ("ip_range", net.trunc().to_string()),
        };
        AccessTarget {
            target: target.into(),
            value,
        }
    }
}

/// An IP access rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct AccessRule {
    /// Cloudflare's id.
    pub id: String,
    /// What it does.
    pub mode: AccessMode,
    /// What it matches.
    pub configuration: AccessTarget,
    /// Free text.
    #[serde(default)]
    pub notes: String,
}

/// Filters for [`Client::access_rules`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AccessFilter {
    /// Only this mode.
    pub mode: Option<AccessMode>,
    /// Only this target kind (`ip`, `ip_range`, ...).
    pub target: Option<String>,
    /// Only this value.
    pub value: Option<String>,
    /// Notes containing this text.
    pub notes: Option<String>,
}

impl AccessFilter {
    /// Only rules whose notes contain `text`.
    pub fn with_notes(mut self, text: impl Into<String>) -> Self {
        self.notes = Some(text.into());
        self
    }

    /// Only rules matching exactly `target`.
    pub fn with_target(mut self, target: &AccessTarget) -> Self {
        self.target = Some(target.target.clone());
        self.value = Some(target.value.clone());
        self
    }
}

impl Client {
    /// The access rules of `scope` matching `filter`, 100 a page.
    pub fn access_rules(
        &self,
        scope: &Scope,
        filter: &AccessFilter,
    ) -> impl Stream<Item = Result<AccessRule>> + Send + 'static {
        let mut call = Call::get(scope.rules_path());
        if let Some(mode) = filter.mode {
            let mode = serde_json::to_value(mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            call = call.query("mode", mode);
        }
        if let Some(t) = &filter.target {
            call = call.query("configuration.target", t);
        }
        if let Some(v) = &filter.value {
            call = call.query("configuration.value", v);
        }
        if let Some(n) = &filter.notes {
            call = call.query("notes", n);
        }
        self.paged(call, 100)
    }

    /// Every matching rule, collected.
    pub async fn list_access_rules(
        &self,
        scope: &Scope,
        filter: &AccessFilter,
    ) -> Result<Vec<AccessRule>> {
        self.access_rules(scope, filter).try_collect().await
    }

    /// Creates a rule.
    pub async fn create_access_rule(
        &self,
        scope: &Scope,
        mode: AccessMode,
        target: &AccessTarget,
        notes: &str,
    ) -> Result<AccessRule> {
        let call = Call::new(Method::POST, scope.rules_path()).body(json!({
            "mode": mode,
            "configuration": target,
            "notes": notes,
        }));
        self.send_as(call).await
    }

    /// Deletes rule `id`.
    pub async fn delete_access_rule(&self, scope: &Scope, id: &str) -> Result<()> {
        let call = Call::new(Method::DELETE, format!("{}/{id}", scope.rules_path()));
        self.send(call).await.map(drop)
    }

    /// Changes the notes of rule `id` (PATCH).
    pub async fn update_access_rule_notes(
        &self,
        scope: &Scope,
        id: &str,
        notes: &str,
    ) -> Result<AccessRule> {
        let call = Call::new(Method::PATCH, format!("{}/{id}", scope.rules_path()))
            .body(json!({ "notes": notes }));
        self.send_as(call).await
    }
}
