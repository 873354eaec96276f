//! Rules Lists of kind `ip` (account level): create a list, add and remove items, and poll
//! the asynchronous bulk operation until it is completed or failed.

use std::time::Duration;

use futures::{Stream, TryStreamExt};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::client::{Call, Client};
use crate::{Error, Result};

/// A Rules List.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct IpList {
    /// Cloudflare's id.
    pub id: String,
    /// The name rules refer to (`$name`).
    pub name: String,
    /// `ip`, `asn`, `hostname`, `redirect`.
    pub kind: String,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Items in the list.
    #[serde(default)]
    pub num_items: Option<u64>,
}

/// One item of an IP list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ListItem {
    /// Cloudflare's id.
    pub id: String,
    /// The address or prefix (`192.0.2.1`, `2001:db8::/64`).
    #[serde(default)]
    pub ip: Option<String>,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

/// An item to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NewItem {
    /// The address or prefix.
    pub ip: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl NewItem {
    /// An item for `ip` with `comment`.
    pub fn new(ip: impl Into<String>, comment: Option<String>) -> Self {
        NewItem {
            ip: ip.into(),
            comment,
        }
    }
}

#[derive(Deserialize)]
struct OperationStarted {
    operation_id: String,
}

#[derive(Deserialize)]
struct Operation {
    status: String,
    #[serde(default)]
    error: Option<String>,
}

/// How long [`Client::wait_for_operation`] polls before giving up.
const OPERATION_DEADLINE: Duration = Duration::from_secs(300);

fn lists_path(account_id: &str) -> String {
    format!("/accounts/{account_id}/rules/lists")
}

impl Client {
    /// Every list of the account.
    pub async fn ip_lists(&self, account_id: &str) -> Result<Vec<IpList>> {
        self.send_as(Call::get(lists_path(account_id))).await
    }

    /// The list named `name`, created (kind `ip`) if absent.
    pub async fn ensure_ip_list(
        &self,
        account_id: &str,
        name: &str,
        description: &str,
    ) -> Result<IpList> {
        if let Some(list) = self
            .ip_lists(account_id)
            .await?
            .into_iter()
            .find(|l| l.name == name)
        {
            if list.kind != "ip" {
                return Err(Error::InvalidConfig {
                    field: "list".into(),
                    reason: format!("list `{name}` exists with kind `{}`, not `ip`", list.kind),
                });
            }
            return Ok(list);
        }
        let call = Call::new(Method::POST, lists_path(account_id)).body(json!({
            "name": name,
            "kind": "ip",
            "description": description,
        }));
        match self.send_as(call).await {
            Ok(list) => Ok(list),
            // Created by an attempt whose answer was lost: find it.
            Err(e @ Error::Api { .. }) => self
                .ip_lists(account_id)
                .await?
                .into_iter()
                .find(|l| l.name == name)
                .ok_or(e),
            Err(e) => Err(e),
        }
    }

    /// The items of list `list_id`, cursor-paginated (500 a page).
    pub fn list_items(
        &self,
        account_id: &str,
        list_id: &str,
    ) -> impl Stream<Item = Result<ListItem>> + Send + 'static {
        self.cursored(
            Call::get(format!("{}/{list_id}/items", lists_path(account_id))),
            500,
        )
    }

    /// Every item, collected.
    pub async fn all_list_items(&self, account_id: &str, list_id: &str) -> Result<Vec<ListItem>> {
        self.list_items(account_id, list_id).try_collect().await
    }

    /// Adds (or updates the comment of) `items` and waits for the operation to complete.
    pub async fn add_list_items(
        &self,
        account_id: &str,
        list_id: &str,
        items: &[NewItem],
    ) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let call = Call::new(
            Method::POST,
            format!("{}/{list_id}/items", lists_path(account_id)),
        )
        .body(json!(items));
        let started: OperationStarted = self.send_as(call).await?;
        self.wait_for_operation(account_id, &started.operation_id)
            .await
    }

    /// Removes the items with ids `ids` and waits for the operation to complete.
    pub async fn remove_list_items(
        &self,
        account_id: &str,
        list_id: &str,
        ids: &[String],
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let items: Vec<_> = ids.iter().map(|id| json!({ "id": id })).collect();
        let call = Call::new(
            Method::DELETE,
            format!("{}/{list_id}/items", lists_path(account_id)),
        )
        .body(json!({ "items": items }));
        let started: OperationStarted = self.send_as(call).await?;
        self.wait_for_operation(account_id, &started.operation_id)
            .await
    }

    /// Polls bulk operation `operation_id` until it is `completed` (Ok) or `failed` (an
    /// [`Error::Operation`] with Cloudflare's message); gives up after five minutes.
    pub async fn wait_for_operation(&self, account_id: &str, operation_id: &str) -> Result<()> {
        let path = format!("{}/bulk_operations/{operation_id}", lists_path(account_id));
        let start = tokio::time::Instant::now();
        let mut wait = Duration::from_millis(50);
        loop {
            let op: Operation = self.send_as(Call::get(path.clone())).await?;
            match op.status.as_str() {
                "completed" => return Ok(()),
                "failed" => {
                    return Err(Error::Operation {
                        operation_id: operation_id.to_owned(),
                        reason: op
                            .error
                            .unwrap_or_else(|| "failed without a message".into()),
                    });
                }
                _ if start.elapsed() > OPERATION_DEADLINE => {
                    return Err(Error::Operation {
                        operation_id: operation_id.to_owned(),
                        reason: format!("still `{}` after {OPERATION_DEADLINE:?}", op.status),
                    });
                }
                _ => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}
