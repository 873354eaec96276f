//! Zone settings for TLS: `ssl` (Full (strict)), `always_use_https`, `min_tls_version`,
//! `tls_1_3`, read, set, and ensured with a report of what changed.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::client::{Call, Client};

/// The SSL/TLS encryption mode between visitors, Cloudflare and the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslMode {
    /// No HTTPS.
    Off,
    /// HTTPS to visitors, plain HTTP to the origin.
    Flexible,
    /// HTTPS to the origin without certificate validation.
    Full,
    /// Full (strict): HTTPS to the origin with a valid certificate.
    Strict,
}

impl SslMode {
    /// Cloudflare's value.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Off => "off",
            SslMode::Flexible => "flexible",
            SslMode::Full => "full",
            SslMode::Strict => "strict",
        }
    }
}

/// The minimum TLS version visitors may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MinTls {
    /// TLS 1.0.
    V1_0,
    /// TLS 1.1.
    V1_1,
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}

impl MinTls {
    /// Cloudflare's value (`"1.2"`).
    pub fn as_str(self) -> &'static str {
        match self {
            MinTls::V1_0 => "1.0",
            MinTls::V1_1 => "1.1",
            MinTls::V1_2 => "1.2",
            MinTls::V1_3 => "1.3",
        }
    }

    /// Parses `"1.2"` etc.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "1.0" => MinTls::V1_0,
            "1.1" => MinTls::V1_1,
            "1.2" => MinTls::V1_2,
            "1.3" => MinTls::V1_3,
            _ => return None,
        })
    }
}

/// The TLS settings to enforce; `None` leaves a setting alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsSettings {
    /// `ssl`.
    pub ssl: Option<SslMode>,
    /// `always_use_https`.
    pub always_use_https: Option<bool>,
    /// `min_tls_version`.
    pub min_tls_version: Option<MinTls>,
    /// `tls_1_3`.
    pub tls_1_3: Option<bool>,
}

impl TlsSettings {
    /// Full (strict), HTTPS only, TLS 1.2 or newer, TLS 1.3 on: the hosting's baseline.
    pub fn strict() -> Self {
        TlsSettings {
            ssl: Some(SslMode::Strict),
            always_use_https: Some(true),
            min_tls_version: Some(MinTls::V1_2),
            tls_1_3: Some(true),
        }
    }

    /// Sets the minimum TLS version.
    pub fn with_min_tls_version(mut self, version: MinTls) -> Self {
        self.min_tls_version = Some(version);
        self
    }

    fn wanted(&self) -> Vec<(&'static str, &'static str)> {
        let on_off = |b: bool| if b { "on" } else { "off" };
        let mut out = Vec::new();
        if let Some(v) = self.ssl {
            out.push(("ssl", v.as_str()));
        }
        if let Some(v) = self.always_use_https {
            out.push(("always_use_https", on_off(v)));
        }
        if let Some(v) = self.min_tls_version {
            out.push(("min_tls_version", v.as_str()));
        }
        if let Some(v) = self.tls_1_3 {
            out.push(("tls_1_3", on_off(v)));
        }
        out
    }
}

/// One setting as Cloudflare reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ZoneSetting {
    /// The setting's name (`ssl`).
    pub id: String,
    /// Its value (`"strict"`; JSON because some settings hold objects).
    pub value: Value,
    /// Whether it can be changed on this plan.
    #[serde(default)]
    pub editable: Option<bool>,
}

/// A setting that [`Client::ensure_tls_settings`] changed, or found right.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SettingCheck {
    /// The setting.
    pub setting: String,
    /// Its value before.
    pub before: Value,
    /// Its value after.
    pub after: Value,
}

impl SettingCheck {
    /// True if the value was changed.
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
}

impl Client {
    /// Reads one zone setting.
    pub async fn zone_setting(&self, zone_id: &str, setting: &str) -> Result<ZoneSetting> {
        self.send_as(Call::get(format!("/zones/{zone_id}/settings/{setting}")))
            .await
    }

    /// Sets one zone setting.
    pub async fn set_zone_setting(
        &self,
        zone_id: &str,
        setting: &str,
        value: Value,
    ) -> Result<ZoneSetting> {
        let call = Call::new(
            Method::PATCH,
            format!("/zones/{zone_id}/settings/{setting}"),
        )
        .body(json!({ "value": value }));
        self.send_as(call).await
    }

    /// Reads the TLS settings `wanted` names, changes those that differ, and reports each
    /// (changed or not). Running it twice changes nothing the second time.
    pub async fn ensure_tls_settings(
        &self,
        zone_id: &str,
        wanted: &TlsSettings,
    ) -> Result<Vec<SettingCheck>> {
        let mut report = Vec::new();
        for (setting, value) in wanted.wanted() {
            let current = self.zone_setting(zone_id, setting).await?;
            let target = json!(value);
            let after = if current.value == target {
                current.value.clone()
            } else {
                self.set_zone_setting(zone_id, setting, target).await?.value
            };
            report.push(SettingCheck {
                setting: setting.to_owned(),
                before: current.value,
                after,
            });
        }
        Ok(report)
    }
}
