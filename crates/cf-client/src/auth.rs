//! Credentials: API tokens (Bearer) or the legacy email + global API key. Secrets never appear
//! in `Debug`, `Display`, logs or errors.

use reqwest::header::{HeaderMap, HeaderValue};

use crate::{Error, Result};

/// A secret string whose `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// How the client authenticates.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Credentials {
    /// An API token, sent as `Authorization: Bearer`.
    Token(Secret),
    /// The legacy account email and global API key (`X-Auth-Email`, `X-Auth-Key`).
    LegacyKey {
        /// The account's email.
        email: String,
        /// The global API key.
        key: Secret,
    },
}

impl Credentials {
    /// The headers that authenticate a request, marked sensitive so no HTTP log shows them.
    pub(crate) fn headers(&self) -> Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        let invalid = |field: &str| Error::InvalidConfig {
            field: field.to_owned(),
            reason: "contains characters not allowed in an HTTP header".to_owned(),
        };
        match self {
            Credentials::Token(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .map_err(|_| invalid("token"))?;
                value.set_sensitive(true);
                headers.insert(reqwest::header::AUTHORIZATION, value);
            }
            Credentials::LegacyKey { email, key } => {
                let email = HeaderValue::from_str(email).map_err(|_| invalid("email"))?;
                let mut key = HeaderValue::from_str(key.expose()).map_err(|_| invalid("key"))?;
                key.set_sensitive(true);
                headers.insert("x-auth-email", email);
                headers.insert("x-auth-key", key);
            }
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let token = Credentials::Token(Secret::new("tok-very-secret"));
        let legacy = Credentials::LegacyKey {
            email: "ops@example.com".into(),
            key: Secret::new("key-very-secret"),
        };
        for text in [format!("{token:?}"), format!("{legacy:?}")] {
            assert!(!text.contains("very-secret"), "{text}");
        }
        assert!(format!("{legacy:?}").contains("ops@example.com"));
    }

    #[test]
    fn headers_carry_the_secret_marked_sensitive() {
        let headers = Credentials::Token(Secret::new("abc"))
            .headers()
            .expect("headers");
        let auth = &headers[reqwest::header::AUTHORIZATION];
        assert_eq!(auth.to_str().expect("ascii"), "Bearer abc");
        assert!(auth.is_sensitive());
        assert!(!format!("{headers:?}").contains("abc"));
        assert!(Credentials::Token(Secret::new("a\nb")).headers().is_err());
    }
}
