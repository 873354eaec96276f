//! nginx stub_status and PHP-FPM status parsers on the documented page layouts (nginx's
//! ngx_http_stub_status_module documentation; PHP-FPM's www.conf `pm.status_path` comments) and
//! on hostile input.

mod support;
use support::assert_verdict;

use healthcheck::checks::status_page::{MAX_STATUS_PAGE, parse_nginx_status, parse_php_fpm_status};
use healthcheck::checks::{NginxStatusCheck, PhpFpmStatusCheck};
use healthcheck::{Check, Reason, Status};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers every request with an endless page (chunked; stops a quarter past the limit).
async fn endless_page() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/status", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.read(&mut [0u8; 4096]).await;
                let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                let mut data = head.as_bytes().to_vec();
                let line = "Active connections: 1 \n";
                for _ in 0..(MAX_STATUS_PAGE + MAX_STATUS_PAGE / 4) / line.len() {
                    data.extend_from_slice(format!("{:x}\r\n{line}\r\n", line.len()).as_bytes());
                }
                data.extend_from_slice(b"0\r\n\r\n");
                let _ = stream.write_all(&data).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn endless_status_pages_are_refused_at_the_limit() {
    let url = endless_page().await;
    let checks: [Box<dyn Check>; 2] = [
        Box::new(NginxStatusCheck::new(&url, support::provider(), None).unwrap()),
        Box::new(PhpFpmStatusCheck::new(&url, support::provider(), None).unwrap()),
    ];
    for check in checks {
        let o = check.run().await;
        assert_verdict(&o, Status::Critical, Reason::Protocol);
        assert!(o.message.contains("larger than"), "{}", o.message);
    }
}

#[test]
fn nginx_documented_example() {
    let page = "Active connections: 291 \nserver accepts handled requests\n 16630948 16630946 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n";
    let s = parse_nginx_status(page).unwrap();
    assert_eq!(
        (s.active, s.accepts, s.handled, s.requests),
        (291, 16_630_948, 16_630_946, 31_070_465)
    );
    assert_eq!((s.reading, s.writing, s.waiting), (6, 179, 106));
    assert!(
        parse_nginx_status("<html>Welcome to nginx!</html>")
            .unwrap_err()
            .contains("Active connections")
    );
    assert!(
        parse_nginx_status("Active connections: 1\nserver accepts handled requests\n 1 2\n")
            .unwrap_err()
            .contains("three numbers")
    );
}

#[test]
fn php_fpm_documented_example() {
    let page = "pool:                 www\nprocess manager:      static\nstart time:           21/Oct/2025:10:00:00 +0000\nstart since:          120\naccepted conn:        12073\nlisten queue:         3\nmax listen queue:     8\nlisten queue len:     128\nidle processes:       0\nactive processes:     16\ntotal processes:      16\nmax active processes: 16\nmax children reached: 4\nslow requests:        2\n";
    let s = parse_php_fpm_status(page).unwrap();
    assert_eq!(s.pool, "www");
    assert_eq!([s.accepted_conn, s.listen_queue], [12073, 3]);
    assert_eq!([s.active_processes, s.idle_processes], [16, 0]);
    assert_eq!((s.max_children_reached, s.slow_requests), (4, 2));
    assert_eq!(
        parse_php_fpm_status("pool: www\n").unwrap_err(),
        "no `accepted conn` line"
    );
}

proptest! {
    #[test]
    fn parsers_never_panic(text in "\\PC{0,300}") {
        let _ = parse_nginx_status(&text);
        let _ = parse_php_fpm_status(&text);
    }
}

#[tokio::test]
async fn credentials_in_check_urls_stay_out_of_messages_and_debug() {
    let served = endless_page()
        .await
        .replace("http://", "http://ops:pw-s3cret@")
        + "?token=t-s3cret";
    let refused = format!(
        "http://ops:pw-s3cret@{}/health?token=t-s3cret",
        support::refused_addr()
    );
    for url in [served, refused] {
        let http = healthcheck::checks::HttpCheck::builder(url.clone(), support::provider())
            .build()
            .unwrap();
        let nginx = NginxStatusCheck::new(&url, support::provider(), None).unwrap();
        let fpm = PhpFpmStatusCheck::new(&url, support::provider(), None).unwrap();
        let debug = [
            format!("{http:?}"),
            format!("{nginx:?}"),
            format!("{fpm:?}"),
        ];
        let checks: [Box<dyn Check>; 3] = [Box::new(http), Box::new(nginx), Box::new(fpm)];
        for check in checks {
            let o = check.run().await;
            assert!(!o.message.contains("s3cret"), "{}", o.message);
            assert!(o.message.contains("127.0.0.1"), "{}", o.message);
        }
        for text in debug {
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains("127.0.0.1"), "{text}");
        }
    }
}
