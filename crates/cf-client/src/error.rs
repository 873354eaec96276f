//! The crate's one public error type.

use std::time::Duration;

use crate::envelope::ApiMessage;

/// A transport failure (connection refused, reset, TLS, body cut short), kept opaque so no
/// HTTP library's type is part of this crate's API.
#[derive(Debug)]
pub struct TransportError(pub(crate) Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // reqwest's Display names the URL, never headers: no secret can reach it.
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(inner) = source {
            write!(f, ": {inner}")?;
            source = inner.source();
        }
        Ok(())
    }
}

impl std::error::Error for TransportError {}

/// Everything that can go wrong talking to Cloudflare.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value (builder option, DNS file entry) is invalid.
    #[error("invalid configuration `{field}`: {reason}")]
    InvalidConfig {
        /// The option at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request could not be sent or its answer not read (after every retry).
    #[error("{request}: transport failed")]
    Transport {
        /// Method and path of the request.
        request: String,
        /// What the transport said.
        #[source]
        source: TransportError,
    },
    /// No answer within the call's timeout (after every retry).
    #[error("{request}: no answer within {timeout:?}")]
    Timeout {
        /// Method and path of the request.
        request: String,
        /// The per-attempt timeout.
        timeout: Duration,
    },
    /// Cloudflare answered `success: false` (or an HTTP error status).
    #[error("{request}: HTTP {status}: {}", display_messages(errors))]
    Api {
        /// Method and path of the request.
        request: String,
        /// The HTTP status.
        status: u16,
        /// Cloudflare's errors, numeric codes kept (e.g. 81057).
        errors: Vec<ApiMessage>,
    },
    /// Still rate limited (HTTP 429) after every retry.
    #[error("{request}: rate limited by Cloudflare (retry after {retry_after:?})")]
    RateLimited {
        /// Method and path of the request.
        request: String,
        /// What `retry-after` asked for.
        retry_after: Option<Duration>,
    },
    /// The answer is not the JSON the API documents.
    #[error("{request}: undecodable answer: {reason}")]
    Decode {
        /// Method and path of the request.
        request: String,
        /// What did not fit.
        reason: String,
    },
    /// A named object (zone, list, ruleset) does not exist.
    #[error("{kind} `{name}` not found")]
    NotFound {
        /// What was looked for (`zone`, `list`, ...).
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// An asynchronous list operation ended as `failed`, or never ended.
    #[error("list operation {operation_id}: {reason}")]
    Operation {
        /// Cloudflare's operation id.
        operation_id: String,
        /// Cloudflare's error message, or why polling gave up.
        reason: String,
    },
    /// A desired-state file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A desired-state file is malformed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong, with its position.
        reason: String,
    },
}

impl Error {
    /// Cloudflare's error codes carried by this error (empty unless [`Error::Api`]).
    pub fn codes(&self) -> Vec<u64> {
        match self {
            Error::Api { errors, .. } => errors.iter().map(|e| e.code).collect(),
            _ => Vec::new(),
        }
    }

    /// True if Cloudflare returned `code` among its errors.
    pub fn has_code(&self, code: u64) -> bool {
        self.codes().contains(&code)
    }

    /// The error, its causes and a hint, as a tool prints it.
    pub fn report(&self) -> String {
        use std::error::Error as _;
        let mut text = self.to_string();
        let mut source = self.source();
        while let Some(inner) = source {
            text.push_str(&format!(": {inner}"));
            source = inner.source();
        }
        if let Some(hint) = self.hint() {
            text.push_str(&format!("\nhint: {hint}"));
        }
        text
    }

    /// A hint for people reading the error in a tool, where one helps.
    pub fn hint(&self) -> Option<&'static str> {
        if self.is_auth() {
            return Some(
                "Cloudflare refused the credentials: check CF_API_TOKEN (or CF_API_EMAIL and \
                 CF_API_KEY) and that the token has the permissions this call needs",
            );
        }
        match self {
            Error::NotFound { kind: "zone", .. } => Some(
                "no zone of that name is visible to these credentials: check the spelling and \
                 the token's zone resources",
            ),
            Error::InvalidConfig { field, .. } if field == "credentials" => {
                Some("set CF_API_TOKEN (or CF_API_EMAIL and CF_API_KEY)")
            }
            Error::Transport { .. } | Error::Timeout { .. } => {
                Some("Cloudflare's API could not be reached (CF_API_URL overrides its address)")
            }
            _ => None,
        }
    }

    /// True for authentication failures (HTTP 401/403, or codes 10000, 9109, 6003, 6111).
    pub fn is_auth(&self) -> bool {
        match self {
            Error::Api { status, errors, .. } => {
                *status == 401
                    || *status == 403
                    || errors
                        .iter()
                        .any(|e| matches!(e.code, 10000 | 9109 | 6003 | 6111 | 1000))
            }
            _ => false,
        }
    }
}

fn display_messages(errors: &[ApiMessage]) -> String {
    if errors.is_empty() {
        return "no error details".to_owned();
    }
    errors
        .iter()
        .map(|e| format!("{} ({})", e.message, e.code))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A tool's exit: success, or the error's [`report`](Error::report) on stderr and failure.
pub fn exit_code(tool: &str, result: Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{tool}: {}", e.report());
            std::process::ExitCode::FAILURE
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
