//! The v4 envelope every answer comes in: `success`, `errors`, `messages`, `result`,
//! `result_info`.

use serde::{Deserialize, Serialize};

/// One entry of `errors` or `messages`: Cloudflare's numeric code and text.
///
/// Codes are plain integers: 81057 and larger values are common, so they are never narrowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApiMessage {
    /// Cloudflare's code (e.g. 81057 "record already exists").
    #[serde(default)]
    pub code: u64,
    /// Cloudflare's message.
    #[serde(default)]
    pub message: String,
}

impl ApiMessage {
    /// A message with `code` and `message`.
    pub fn new(code: u64, message: impl Into<String>) -> Self {
        ApiMessage {
            code,
            message: message.into(),
        }
    }
}

/// Cursors of cursor-paginated lists (`result_info.cursors`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Cursors {
    /// The cursor of the next page, absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// The cursor of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// `result_info`: where a page sits in a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ResultInfo {
    /// This page's number (page-based lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    /// Items per page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_page: Option<u64>,
    /// Items on this page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Items in the whole list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_count: Option<u64>,
    /// Pages in the whole list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_pages: Option<u64>,
    /// Cursors (cursor-based lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursors: Option<Cursors>,
}

/// A decoded envelope; `result` is kept as JSON until the caller asks for its type, so an
/// envelope is parsed once and an unexpected result shape is reported with the request.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Envelope {
    #[serde(default)]
    pub(crate) success: bool,
    #[serde(default)]
    pub(crate) errors: Vec<ApiMessage>,
    #[serde(default)]
    #[allow(dead_code)] // decoded for completeness; warnings are logged by the caller
    pub(crate) messages: Vec<ApiMessage>,
    #[serde(default)]
    pub(crate) result: serde_json::Value,
    #[serde(default)]
    pub(crate) result_info: Option<ResultInfo>,
}
