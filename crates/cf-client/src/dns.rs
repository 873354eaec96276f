//! DNS records: typed record data (unknown types kept as raw JSON), list with filters, create,
//! overwrite (PUT), update (PATCH), delete, and the batch endpoint.

use std::net::{Ipv4Addr, Ipv6Addr};

use futures::{Stream, TryStreamExt};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::{Call, Client, decode};
use crate::{Error, Result};

/// What a record says, by type. Types this crate does not model, and records whose content
/// does not parse as their type, are kept as [`RecordData::Other`] so listing never fails.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RecordData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// A canonical name.
    Cname(String),
    /// Text (as Cloudflare stores it).
    Txt(String),
    /// A name server.
    Ns(String),
    /// A pointer.
    Ptr(String),
    /// A mail exchanger.
    Mx {
        /// Preference (lower first).
        priority: u16,
        /// The mail server.
        exchange: String,
    },
    /// Certification Authority Authorization.
    Caa {
        /// Flags (0 or 128).
        flags: u8,
        /// `issue`, `issuewild`, `iodef`.
        tag: String,
        /// The CA's domain or a URL.
        value: String,
    },
    /// A service locator.
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host.
        target: String,
    },
    /// Any other type, kept as Cloudflare sent it.
    Other {
        /// The record type (`SSHFP`, `HTTPS`, ...).
        kind: String,
        /// `content`, when present.
        content: Option<String>,
        /// `data`, when present (compact JSON text, so records stay comparable).
        data: Option<String>,
        /// `priority`, when present.
        priority: Option<u16>,
    },
}

impl RecordData {
    /// The record type as Cloudflare names it.
    pub fn kind(&self) -> &str {
        match self {
            RecordData::A(_) => "A",
            RecordData::Aaaa(_) => "AAAA",
            RecordData::Cname(_) => "CNAME",
            RecordData::Txt(_) => "TXT",
            RecordData::Ns(_) => "NS",
            RecordData::Ptr(_) => "PTR",
            RecordData::Mx { .. } => "MX",
            RecordData::Caa { .. } => "CAA",
            RecordData::Srv { .. } => "SRV",
            RecordData::Other { kind, .. } => kind,
        }
    }

    /// True for types Cloudflare can proxy.
    pub fn proxiable(&self) -> bool {
        matches!(
            self,
            RecordData::A(_) | RecordData::Aaaa(_) | RecordData::Cname(_)
        )
    }

    /// The value in zone-file style (`10 mail.example.com`, `0 issue "ca.example"`).
    pub fn display_value(&self) -> String {
        match self {
            RecordData::A(ip) => ip.to_string(),
            RecordData::Aaaa(ip) => ip.to_string(),
            RecordData::Cname(t) | RecordData::Ns(t) | RecordData::Ptr(t) => t.clone(),
            RecordData::Txt(t) => format!("{t:?}"),
            RecordData::Mx { priority, exchange } => format!("{priority} {exchange}"),
            RecordData::Caa { flags, tag, value } => format!("{flags} {tag} {value:?}"),
            RecordData::Srv {
                priority,
                weight,
                port,
                target,
            } => format!("{priority} {weight} {port} {target}"),
            RecordData::Other { content, data, .. } => {
                content.clone().or_else(|| data.clone()).unwrap_or_default()
            }
        }
    }

    /// Parses the wire fields of one record.
    fn from_wire(
        kind: &str,
        content: Option<&str>,
        data: Option<&Value>,
        priority: Option<u16>,
    ) -> RecordData {
        let host = |s: &str| normalize_host(s);
        let typed = match (kind, content, data) {
            ("A", Some(c), _) => c.parse().ok().map(RecordData::A),
            ("AAAA", Some(c), _) => c.parse().ok().map(RecordData::Aaaa),
            ("CNAME", Some(c), _) => Some(RecordData::Cname(host(c))),
            ("TXT", Some(c), _) => Some(RecordData::Txt(c.to_owned())),
            ("NS", Some(c), _) => Some(RecordData::Ns(host(c))),
            ("PTR", Some(c), _) => Some(RecordData::Ptr(host(c))),
            ("MX", Some(c), _) => priority.map(|priority| RecordData::Mx {
                priority,
                exchange: host(c),
            }),
            ("CAA", _, Some(d)) => (|| {
                Some(RecordData::Caa {
                    flags: u8::try_from(d.get("flags")?.as_u64()?).ok()?,
                    tag: d.get("tag")?.as_str()?.to_owned(),
                    value: d.get("value")?.as_str()?.to_owned(),
                })
            })(),
            ("SRV", _, Some(d)) => (|| {
                let field = |k: &str| d.get(k)?.as_u64().and_then(|v| u16::try_from(v).ok());
                Some(RecordData::Srv {
                    priority: field("priority")?,
                    weight: field("weight")?,
                    port: field("port")?,
                    target: host(d.get("target")?.as_str()?),
                })
            })(),
            _ => None,
        };
        typed.unwrap_or_else(|| RecordData::Other {
            kind: kind.to_owned(),
            content: content.map(str::to_owned),
            data: data.map(Value::to_string),
            priority,
        })
    }

    /// The wire fields (`type`, `content`, `data`, `priority`) of this data.
    fn to_wire(&self, body: &mut serde_json::Map<String, Value>) {
        body.insert("type".into(), json!(self.kind()));
        match self {
            RecordData::Mx { priority, exchange } => {
                body.insert("content".into(), json!(exchange));
                body.insert("priority".into(), json!(priority));
            }
            RecordData::Caa { flags, tag, value } => {
                body.insert(
                    "data".into(),
                    json!({"flags": flags, "tag": tag, "value": value}),
                );
                // The schema lists `content` as required for every type.
                body.insert("content".into(), json!(self.display_value()));
            }
            RecordData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                body.insert(
                    "data".into(),
                    json!({"priority": priority, "weight": weight, "port": port, "target": target}),
                );
                body.insert("content".into(), json!(format!("{weight} {port} {target}")));
            }
            RecordData::Other {
                content,
                data,
                priority,
                ..
            } => {
                if let Some(c) = content {
                    body.insert("content".into(), json!(c));
                }
                if let Some(d) = data.as_deref().and_then(|d| serde_json::from_str(d).ok()) {
                    body.insert("data".into(), d);
                }
                if let Some(p) = priority {
                    body.insert("priority".into(), json!(p));
                }
            }
            other => {
                body.insert("content".into(), json!(other.display_value_raw()));
            }
        }
    }

    fn display_value_raw(&self) -> String {
        match self {
            RecordData::Txt(t) => t.clone(),
            other => other.display_value(),
        }
    }
}

/// Lower case, no trailing dot: how names and targets are compared.
pub(crate) fn normalize_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A record to create or write: name, data and the optional settings.
///
/// `ttl`, `proxied`, `comment` and `tags` set to `None` mean "Cloudflare's default" when
/// creating and "leave as it is" when planning.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordSpec {
    /// Fully qualified name, lower case, no trailing dot.
    pub name: String,
    /// Type and value.
    pub data: RecordData,
    /// Seconds, or 1 for automatic.
    pub ttl: Option<u32>,
    /// Whether Cloudflare proxies it (A, AAAA, CNAME only).
    pub proxied: Option<bool>,
    /// A note shown in the dashboard.
    pub comment: Option<String>,
    /// `name:value` tags.
    pub tags: Option<Vec<String>>,
}

impl RecordSpec {
    /// A record `name` with `data`, other settings left to Cloudflare.
    pub fn new(name: impl AsRef<str>, data: RecordData) -> Self {
        RecordSpec {
            name: normalize_host(name.as_ref()),
            data,
            ttl: None,
            proxied: None,
            comment: None,
            tags: None,
        }
    }

    /// Sets the TTL (1 = automatic).
    pub fn with_ttl(mut self, ttl: u32) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets proxying.
    pub fn with_proxied(mut self, proxied: bool) -> Self {
        self.proxied = Some(proxied);
        self
    }

    /// Sets the comment.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        self.comment = Some(comment.into());
        self
    }

    /// The JSON body Cloudflare expects for create and PUT.
    pub(crate) fn to_body(&self) -> Value {
        let mut body = serde_json::Map::new();
        body.insert("name".into(), json!(self.name));
        self.data.to_wire(&mut body);
        body.insert("ttl".into(), json!(self.ttl.unwrap_or(1)));
        if self.data.proxiable() {
            body.insert("proxied".into(), json!(self.proxied.unwrap_or(false)));
        }
        if let Some(c) = &self.comment {
            body.insert("comment".into(), json!(c));
        }
        if let Some(t) = &self.tags {
            body.insert("tags".into(), json!(t));
        }
        Value::Object(body)
    }
}

/// A record as Cloudflare holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DnsRecord {
    /// Cloudflare's id.
    pub id: String,
    /// Name, data and settings (all `Some` as Cloudflare reported them, where it did).
    pub spec: RecordSpec,
    /// Whether Cloudflare could proxy it.
    pub proxiable: bool,
}

/// The fields of a record on the wire; unknown fields are ignored.
#[derive(Debug, Deserialize, Serialize)]
struct WireRecord {
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    priority: Option<u16>,
    #[serde(default)]
    ttl: Option<u32>,
    #[serde(default)]
    proxied: Option<bool>,
    #[serde(default)]
    proxiable: Option<bool>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl WireRecord {
    fn spec(&self) -> RecordSpec {
        RecordSpec {
            name: normalize_host(&self.name),
            data: RecordData::from_wire(
                &self.kind,
                self.content.as_deref(),
                self.data.as_ref(),
                self.priority,
            ),
            ttl: self.ttl,
            proxied: self.proxied,
            comment: self.comment.clone(),
            tags: self.tags.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for DnsRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let wire = WireRecord::deserialize(d)?;
        Ok(DnsRecord {
            id: wire.id.clone().unwrap_or_default(),
            spec: wire.spec(),
            proxiable: wire.proxiable.unwrap_or(false),
        })
    }
}

/// Parses one desired record from a user's file (same fields as the API, `name` may be
/// relative to the zone or `@`).
pub(crate) fn spec_from_file(value: Value, zone: &str) -> std::result::Result<RecordSpec, String> {
    let wire: WireRecord = serde_json::from_value(value).map_err(|e| e.to_string())?;
    if wire.id.is_some() || wire.proxiable.is_some() {
        return Err("`id` and `proxiable` are set by Cloudflare, not by the file".into());
    }
    let mut spec = wire.spec();
    spec.name = qualify(&spec.name, zone);
    if let RecordData::Other { kind, .. } = &spec.data {
        let known = ["A", "AAAA", "CNAME", "TXT", "NS", "PTR", "MX", "CAA", "SRV"];
        if known.contains(&kind.as_str()) {
            return Err(format!(
                "{kind} record `{}`: value missing or malformed (A/AAAA need an address in \
                 `content`, MX needs `priority`, CAA and SRV need `data`)",
                spec.name
            ));
        }
    }
    if spec.proxied == Some(true) && !spec.data.proxiable() {
        return Err(format!(
            "{} record `{}` cannot be proxied",
            spec.data.kind(),
            spec.name
        ));
    }
    Ok(spec)
}

/// `@` is the zone apex; a name not ending in the zone is relative to it.
pub(crate) fn qualify(name: &str, zone: &str) -> String {
    let name = normalize_host(name);
    let zone = normalize_host(zone);
    if name == "@" || name.is_empty() {
        zone
    } else if name == zone || name.ends_with(&format!(".{zone}")) {
        name
    } else {
        format!("{name}.{zone}")
    }
}

/// Filters for [`Client::dns_records`]; unset fields do not filter.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DnsFilter {
    /// Exact fully qualified name.
    pub name: Option<String>,
    /// Record type.
    pub kind: Option<String>,
    /// Exact content.
    pub content: Option<String>,
    /// Comment contains this text.
    pub comment_contains: Option<String>,
    /// Has this tag (`name` or `name:value`).
    pub tag: Option<String>,
}

impl DnsFilter {
    /// No filter: every record.
    pub fn all() -> Self {
        DnsFilter::default()
    }

    /// Only records named `name`.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Only records of type `kind`.
    pub fn with_type(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Only records with exactly this content.
    pub fn with_content(mut self, content: impl Into<String>) -> Self {
        self.content = Some(content.into());
        self
    }

    /// Only records whose comment contains `text`.
    pub fn with_comment_containing(mut self, text: impl Into<String>) -> Self {
        self.comment_contains = Some(text.into());
        self
    }

    /// Only records tagged `tag`.
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }
}

/// One batch of changes for `POST /zones/{zone_id}/dns_records/batch`, applied by Cloudflare
/// in the order deletes, patches, puts, posts, as one transaction.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DnsBatch {
    /// Ids to delete.
    pub deletes: Vec<String>,
    /// `(id, record)` to overwrite.
    pub puts: Vec<(String, RecordSpec)>,
    /// Records to create.
    pub posts: Vec<RecordSpec>,
}

impl DnsBatch {
    /// The number of operations in the batch.
    pub fn len(&self) -> usize {
        self.deletes.len() + self.puts.len() + self.posts.len()
    }

    /// True if the batch does nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a batch did.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DnsBatchResult {
    /// The records deleted.
    pub deletes: Vec<DnsRecord>,
    /// The records overwritten, as they are now.
    pub puts: Vec<DnsRecord>,
    /// The records created.
    pub posts: Vec<DnsRecord>,
}

fn records_path(zone_id: &str) -> String {
    format!("/zones/{zone_id}/dns_records")
}

impl Client {
    /// The zone's records matching `filter`, 1,000 a page.
    pub fn dns_records(
        &self,
        zone_id: &str,
        filter: &DnsFilter,
    ) -> impl Stream<Item = Result<DnsRecord>> + Send + 'static {
        let mut call = Call::get(records_path(zone_id));
        if let Some(v) = &filter.name {
            call = call.query("name", v);
        }
        if let Some(v) = &filter.kind {
            call = call.query("type", v);
        }
        if let Some(v) = &filter.content {
            call = call.query("content", v);
        }
        if let Some(v) = &filter.comment_contains {
            call = call.query("comment.contains", v);
        }
        if let Some(v) = &filter.tag {
            call = call.query("tag", v);
        }
        self.paged(call, 1000)
    }

    /// Every record of the zone matching `filter`, collected.
    pub async fn list_dns_records(
        &self,
        zone_id: &str,
        filter: &DnsFilter,
    ) -> Result<Vec<DnsRecord>> {
        self.dns_records(zone_id, filter).try_collect().await
    }

    /// Creates a record. Cloudflare refuses duplicates with code 81058 (identical record)
    /// or 81057 (record already exists).
    pub async fn create_dns_record(&self, zone_id: &str, spec: &RecordSpec) -> Result<DnsRecord> {
        let call = Call::new(Method::POST, records_path(zone_id)).body(spec.to_body());
        self.send_as(call).await
    }

    /// Overwrites record `id` with `spec` (PUT).
    pub async fn overwrite_dns_record(
        &self,
        zone_id: &str,
        id: &str,
        spec: &RecordSpec,
    ) -> Result<DnsRecord> {
        let call =
            Call::new(Method::PUT, format!("{}/{id}", records_path(zone_id))).body(spec.to_body());
        self.send_as(call).await
    }

    /// Changes only the given fields of record `id` (PATCH), e.g. `{"ttl": 300}`.
    pub async fn update_dns_record(
        &self,
        zone_id: &str,
        id: &str,
        fields: serde_json::Map<String, Value>,
    ) -> Result<DnsRecord> {
        let call = Call::new(Method::PATCH, format!("{}/{id}", records_path(zone_id)))
            .body(Value::Object(fields));
        self.send_as(call).await
    }

    /// Deletes record `id`; Cloudflare answers 81044 if it does not exist.
    pub async fn delete_dns_record(&self, zone_id: &str, id: &str) -> Result<()> {
        let call = Call::new(Method::DELETE, format!("{}/{id}", records_path(zone_id)));
        self.send(call).await.map(drop)
    }

    /// Applies `batch` in one request and one transaction (at most 200 operations on the
    /// Free plan; [`crate::plan`] splits larger changes).
    pub async fn dns_batch(&self, zone_id: &str, batch: &DnsBatch) -> Result<DnsBatchResult> {
        #[derive(Deserialize, Default)]
        struct Wire {
            #[serde(default)]
            deletes: Vec<DnsRecord>,
            #[serde(default)]
            puts: Vec<DnsRecord>,
            #[serde(default)]
            posts: Vec<DnsRecord>,
        }
        let puts: Vec<Value> = batch
            .puts
            .iter()
            .map(|(id, spec)| {
                let mut body = spec.to_body();
                if let Value::Object(map) = &mut body {
                    map.insert("id".into(), json!(id));
                }
                body
            })
            .collect();
        let body = json!({
            "deletes": batch.deletes.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
            "patches": [],
            "puts": puts,
            "posts": batch.posts.iter().map(RecordSpec::to_body).collect::<Vec<_>>(),
        });
        let call = Call::new(Method::POST, format!("{}/batch", records_path(zone_id))).body(body);
        let request = format!("POST {}/batch", records_path(zone_id));
        let answer = self.send(call).await?;
        let wire: Wire = if answer.result.is_null() {
            Wire::default()
        } else {
            decode(&request, answer.result)?
        };
        Ok(DnsBatchResult {
            deletes: wire.deletes,
            puts: wire.puts,
            posts: wire.posts,
        })
    }
}

/// Codes Cloudflare gives when a record to create is already there.
pub const CODE_RECORD_EXISTS: u64 = 81057;
/// Code for "an identical record already exists".
pub const CODE_IDENTICAL_RECORD_EXISTS: u64 = 81058;
/// Code for "record does not exist".
pub const CODE_RECORD_MISSING: u64 = 81044;

/// True if `error` says the record to create already exists.
pub(crate) fn is_already_there(error: &Error) -> bool {
    error.has_code(CODE_RECORD_EXISTS) || error.has_code(CODE_IDENTICAL_RECORD_EXISTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_types_and_fields_decode() {
        let records: Vec<DnsRecord> = serde_json::from_value(json!([
            {"id": "1", "type": "CAA", "name": "Example.com.", "content": "0 issue \"ca.example\"",
             "data": {"flags": 0, "tag": "issue", "value": "ca.example"}, "ttl": 1,
             "brand_new_field": {"x": 1}},
            {"id": "2", "type": "SSHFP", "name": "h.example.com",
             "data": {"algorithm": 4, "type": 2, "fingerprint": "ab"}},
            {"id": "3", "type": "A", "name": "bad.example.com", "content": "not-an-ip"},
            {"id": "4", "type": "MX", "name": "example.com", "content": "Mail.Example.com", "priority": 10},
        ]))
        .expect("decodes");
        assert_eq!(
            records[0].spec.data,
            RecordData::Caa {
                flags: 0,
                tag: "issue".into(),
                value: "ca.example".into()
            }
        );
        assert_eq!(records[0].spec.name, "example.com");
        assert!(
            matches!(&records[1].spec.data, RecordData::Other { kind, data: Some(d), .. }
            if kind == "SSHFP" && d.contains("fingerprint"))
        );
        assert!(matches!(&records[2].spec.data, RecordData::Other { kind, .. } if kind == "A"));
        assert_eq!(
            records[3].spec.data,
            RecordData::Mx {
                priority: 10,
                exchange: "mail.example.com".into()
            }
        );
    }

    #[test]
    fn names_are_qualified() {
        assert_eq!(qualify("@", "Example.com"), "example.com");
        assert_eq!(qualify("www", "example.com"), "www.example.com");
        assert_eq!(
            qualify("www.example.com.", "example.com"),
            "www.example.com"
        );
    }

    #[test]
    fn file_records_are_checked() {
        let err = spec_from_file(
            json!({"name": "x", "type": "A", "content": "nope"}),
            "e.com",
        )
        .expect_err("bad A");
        assert!(err.contains("A record `x.e.com`"), "{err}");
        let err = spec_from_file(
            json!({"name": "x", "type": "TXT", "content": "t", "proxied": true}),
            "e.com",
        )
        .expect_err("proxied TXT");
        assert!(err.contains("cannot be proxied"), "{err}");
    }
}
