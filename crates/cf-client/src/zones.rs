//! Zones: list and find by name.

use futures::{Stream, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::client::{Call, Client};
use crate::{Error, Result};

/// A zone (only the fields this crate uses; others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Zone {
    /// The zone's id.
    pub id: String,
    /// The domain name.
    pub name: String,
    /// `active`, `pending`, ...
    #[serde(default)]
    pub status: Option<String>,
    /// The owning account.
    #[serde(default)]
    pub account: Option<ZoneAccount>,
}

/// The account a zone belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ZoneAccount {
    /// The account id.
    pub id: String,
    /// The account name.
    #[serde(default)]
    pub name: Option<String>,
}

impl Client {
    /// Every zone the credentials can see, fetched page by page (50 a page).
    pub fn zones(&self) -> impl Stream<Item = Result<Zone>> + Send + 'static {
        self.paged(Call::get("/zones"), 50)
    }

    /// The zone named `name` (e.g. `example.com`); [`Error::NotFound`] if there is none.
    pub async fn find_zone(&self, name: &str) -> Result<Zone> {
        let wanted = name.trim_end_matches('.').to_ascii_lowercase();
        let zones: Vec<Zone> = self
            .paged(Call::get("/zones").query("name", &wanted), 50)
            .try_collect()
            .await?;
        zones
            .into_iter()
            .find(|z| z.name.eq_ignore_ascii_case(&wanted))
            .ok_or(Error::NotFound {
                kind: "zone",
                name: wanted,
            })
    }
}
