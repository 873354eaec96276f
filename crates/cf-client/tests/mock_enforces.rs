//! The mock refuses what Cloudflare refuses: requests are sent raw (HTTP/1.1 over a TCP
//! socket), bypassing the client, so nothing the client does right can hide a lax mock.

use cf_client::mock::{MOCK_TOKEN, MockCloudflare};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw(
    mock: &MockCloudflare,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let url = mock.url();
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, base) = rest.split_once('/').expect("path");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut request =
        format!("{method} /{base}{path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
    if let Some(auth) = auth {
        request.push_str(&format!("authorization: {auth}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let status: u16 = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let json = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(json).expect("envelope"))
}

fn code(envelope: &Value) -> u64 {
    envelope["errors"][0]["code"]
        .as_u64()
        .expect("an error code")
}

#[tokio::test]
async fn the_mock_enforces_auth_schema_and_routes() {
    let mock = MockCloudflare::start_with_zone("example.com")
        .await
        .expect("mock");
    let zone = mock.zone_id("example.com").expect("zone");
    let bearer = format!("Bearer {MOCK_TOKEN}");
    let auth = Some(bearer.as_str());

    let (status, env) = raw(&mock, "GET", "/zones", None, None).await;
    assert_eq!((status, code(&env)), (400, 6003));
    assert_eq!(env["success"], false);
    let (status, env) = raw(&mock, "GET", "/zones", Some("Bearer nope"), None).await;
    assert_eq!((status, code(&env)), (403, 10000));

    let (status, env) = raw(&mock, "GET", "/zones?page=1&per_page=50", auth, None).await;
    assert_eq!(status, 200);
    assert_eq!(env["result_info"]["total_count"], 1);
    assert!(mock.violations().is_empty());

    // Query parameters are checked against the spec: unknown names, out-of-range numbers.
    let (status, _) = raw(&mock, "GET", "/zones?colour=blue", auth, None).await;
    assert_eq!(status, 400);
    let (status, _) = raw(&mock, "GET", "/zones?per_page=500", auth, None).await;
    assert_eq!(status, 400, "zones per_page is at most 50");

    // Bodies are checked against the spec: a CAA record without `data`, a TTL of the wrong
    // type, a record type that does not exist.
    let path = format!("/zones/{zone}/dns_records");
    for bad in [
        r#"{"type":"CAA","name":"example.com","content":"x"}"#,
        r#"{"type":"A","name":"a.example.com","content":"192.0.2.1","ttl":"300"}"#,
        r#"{"type":"BOGUS","name":"a.example.com","content":"x"}"#,
    ] {
        let (status, env) = raw(&mock, "POST", &path, auth, Some(bad)).await;
        assert_eq!((status, code(&env)), (400, 6007), "{bad}: {env}");
    }
    assert_eq!(mock.violations().len(), 5, "{:#?}", mock.violations());
    assert!(mock.records("example.com").is_empty());

    let good = r#"{"type":"A","name":"a.example.com","content":"192.0.2.1","ttl":300}"#;
    let (status, env) = raw(&mock, "POST", &path, auth, Some(good)).await;
    assert_eq!(status, 200, "{env}");
    assert_eq!(env["result"]["proxiable"], true);
    let (status, env) = raw(&mock, "POST", &path, auth, Some(good)).await;
    assert_eq!((status, code(&env)), (400, 81058));
    let (status, env) = raw(&mock, "DELETE", &format!("{path}/ffff"), auth, None).await;
    assert_eq!((status, code(&env)), (404, 81044));
    let (status, _) = raw(&mock, "GET", "/no/such/route", auth, None).await;
    assert_eq!(status, 404);
}
