//! An async typed client for Cloudflare's API v4: DNS records with declarative plans, zone
//! TLS settings, rate-limiting rules, IP access rules and IP lists, and (feature `logban`) a
//! logban ban sink that bans at the edge.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cf_client::Result<()> {
//! use cf_client::{Client, plan::{ApplyMode, DesiredZone}, dns::{RecordData, RecordSpec}};
//! # let mock = cf_client::mock::MockCloudflare::builder().with_zone("example.com").start().await?;
//! # let api_url = mock.url();
//! # let token = cf_client::mock::MOCK_TOKEN;
//! let client = Client::builder().with_token(token).with_base_url(api_url).build()?;
//! let desired = DesiredZone::new("example.com", vec![
//!     RecordSpec::new("www.example.com", RecordData::A("192.0.2.10".parse().unwrap()))
//!         .with_ttl(300)
//!         .with_proxied(true),
//!     RecordSpec::new("example.com", RecordData::Caa {
//!         flags: 0, tag: "issue".into(), value: "letsencrypt.org".into(),
//!     }),
//! ]);
//! let plan = client.plan_dns(&desired).await?;           // the dry run
//! print!("{plan}");                                        // + www.example.com A 192.0.2.10 ...
//! assert_eq!(plan.summary().create, 2);
//! let report = cf_client::plan::apply(&client, &desired, ApplyMode::Batch { size: 200 }, 3).await?;
//! assert_eq!(report.done.create, 2);
//! assert!(client.plan_dns(&desired).await?.is_empty());   // applying again changes nothing
//! # Ok(()) }
//! ```
//!
//! - [`Client`]: API tokens (Bearer) or the legacy email + global key; secrets never appear in
//!   `Debug`, `Display`, logs or errors. Every answer's envelope is decoded once, errors keep
//!   Cloudflare's numeric codes ([`Error::codes`], e.g. 81057), unknown fields and record types
//!   never break decoding. Lists come as streams (page- and cursor-based); 5xx, timeouts and
//!   dropped connections are retried with jittered exponential backoff, a 429's `retry-after`
//!   pauses every caller of the client, a sliding-window limiter keeps the client under
//!   1,100 requests per 5 minutes (Cloudflare allows 1,200), and every attempt has a timeout.
//!   Creates are retried too, so a create whose answer was lost comes back as "already exists"
//!   (81057/81058 for DNS): [`plan::apply`] and the ban sink answer that by listing again, never
//!   by creating a second copy.
//! - [`zones`], [`dns`] (list with filters, create, PUT, PATCH, delete, the batch endpoint),
//!   [`plan`] (declarative DNS), [`settings`] (ssl, always_use_https, min_tls_version,
//!   tls_1_3 with an `ensure` that reports changes), [`rulesets`] (`http_ratelimit`
//!   entrypoint rules), [`access`] (IP access rules, zone and account), [`lists`] (IP lists
//!   and their asynchronous bulk operations).
//! - `sink` (feature `logban`): a logban `BanSink` into an account IP list or access rules.
//! - `mock` (feature `mock`): a local Cloudflare API on loopback that enforces the protocol
//!   (auth, envelope, paging, the request budget, asynchronous list operations, error codes)
//!   and validates every request and response body against Cloudflare's OpenAPI schema.
//!
//! Dependencies and why: `reqwest` with rustls on ring (the workspace's HTTP stack; the
//! crypto provider is passed explicitly, never installed process-wide) and
//! `rustls-platform-verifier` (the system's trust store); `serde`/`serde_json`/`toml` (the
//! API and desired-state files); `futures` (streams); `fastrand` (backoff jitter); `ipnet`.
//! The mock adds `hyper` (a plain HTTP/1 server, already under reqwest) and `jsonschema`
//! (a full JSON Schema validator rather than a hand-written partial one).

pub mod access;
mod auth;
mod client;
pub mod dns;
mod envelope;
mod error;
pub mod lists;
#[cfg(feature = "mock")]
pub mod mock;
pub mod plan;
pub mod rulesets;
pub mod settings;
#[cfg(feature = "logban")]
pub mod sink;
pub mod zones;

pub use auth::{Credentials, Secret};
pub use client::{
    CLOUDFLARE_BUDGET, CLOUDFLARE_WINDOW, Client, ClientBuilder, ClientStats, DEFAULT_BASE_URL,
    MAX_RESPONSE_BYTES, MAX_RETRY_AFTER,
};
pub use envelope::{ApiMessage, Cursors, ResultInfo};
pub use error::{Error, Result, TransportError, exit_code};
