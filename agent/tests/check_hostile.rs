//! Hostile real servers: a megabyte header, a 10-digit status code, slowloris, an endless
//! body, silence, invalid TLS. Each check fails (within its deadline, enforced by the
//! attempt's timeout) with a reason, and nothing crashes. Also `genhash` against a real
//! server, compared with `md5sum`.

#![allow(clippy::unwrap_used)]

mod check_support;

use std::time::Duration;

use check_support::{http_server, md5sum, response, spec, tls_server, Behaviour};
use ha_agent::lb::check::runner::attempt;
use ha_agent::lb::genhash::genhash;

fn http_spec(port: u16, extra: &str) -> ha_agent::lb::check::CheckerSpec {
    spec(
        port,
        "",
        &format!("HTTP_GET {{\n url {{\n path /\n {extra}\n }}\n connect_timeout 1\n }}"),
    )
}

#[tokio::test]
async fn megabyte_header() {
    let mut r = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    r.resize(1024 * 1024, b'a');
    r.extend_from_slice(b"\r\n\r\nbody");
    let srv = http_server(move |_| Behaviour::Reply(r.clone())).await;
    let o = attempt(&http_spec(srv.port, "")).await;
    assert!(!o.up);
    assert!(o.detail.contains("reply head longer than"), "{}", o.detail);
}

#[tokio::test]
async fn ten_digit_status_code() {
    let srv = http_server(|_| Behaviour::Reply(b"HTTP/1.1 2000000000 OK\r\n\r\n".to_vec())).await;
    let o = attempt(&http_spec(srv.port, "")).await;
    assert!(!o.up);
    assert!(o.detail.contains("bad status line"), "{}", o.detail);
}

#[tokio::test]
async fn slowloris_head() {
    // A valid reply, one byte every 50 ms: it would take seconds; the deadline is 1 s.
    let srv = http_server(|_| {
        Behaviour::Trickle(response("200 OK", b"hello"), Duration::from_millis(50))
    })
    .await;
    let o = attempt(&http_spec(srv.port, "")).await;
    assert!(!o.up);
    assert_eq!(o.detail, "timeout after 1s");
}

#[tokio::test]
async fn slowloris_body_with_digest() {
    let mut r = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
    r.extend_from_slice(&[b'x'; 200]);
    let srv = http_server(move |_| Behaviour::Trickle(r.clone(), Duration::from_millis(20))).await;
    let o = attempt(&http_spec(
        srv.port,
        "digest 0123456789abcdef0123456789abcdef",
    ))
    .await;
    assert!(!o.up);
    assert_eq!(o.detail, "timeout after 1s");
}

#[tokio::test]
async fn silent_server() {
    let srv = http_server(|_| Behaviour::Silent).await;
    let o = attempt(&http_spec(srv.port, "")).await;
    assert!(!o.up);
    assert_eq!(o.detail, "timeout after 1s");
}

#[tokio::test]
async fn oversized_body_for_digest() {
    let mut r = b"HTTP/1.0 200 OK\r\n\r\n".to_vec();
    r.resize(5 * 1024 * 1024, b'z');
    let srv = http_server(move |_| Behaviour::Reply(r.clone())).await;
    let s = spec(
        srv.port,
        "",
        "HTTP_GET {\n url {\n path /\n digest 0123456789abcdef0123456789abcdef\n }\n connect_timeout 5\n }",
    );
    let o = attempt(&s).await;
    assert!(!o.up);
    assert!(o.detail.contains("body larger than"), "{}", o.detail);
    // A Content-Length above the cap is refused before reading.
    let srv = http_server(|_| {
        Behaviour::Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n".to_vec())
    })
    .await;
    let o = attempt(&http_spec(
        srv.port,
        "digest 0123456789abcdef0123456789abcdef",
    ))
    .await;
    assert!(!o.up);
    assert!(o.detail.contains("body larger than"), "{}", o.detail);
}

#[tokio::test]
async fn garbage_and_truncation() {
    for reply in [
        &b"\x00\x01\x02garbage\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\n bad folding\r\n\r\n",
        b"",
    ] {
        let r = reply.to_vec();
        let srv = http_server(move |_| Behaviour::Reply(r.clone())).await;
        let o = attempt(&http_spec(
            srv.port,
            "digest 0123456789abcdef0123456789abcdef",
        ))
        .await;
        assert!(!o.up, "{reply:?}");
    }
}

#[tokio::test]
async fn invalid_tls() {
    // A plain HTTP server behind an SSL_GET, answering at once.
    let srv = http_server(|_| Behaviour::Immediate(response("200 OK", b"plain"))).await;
    let s = spec(
        srv.port,
        "",
        "SSL_GET {\n url {\n path /\n }\n connect_timeout 1\n }",
    );
    let o = attempt(&s).await;
    assert!(!o.up);
    assert!(o.detail.contains("tls"), "{}", o.detail);
    // Random bytes trickling where a ServerHello should be.
    let srv = http_server(|_| {
        Behaviour::Trickle(
            vec![0x16, 0x03, 0x03, 0x40, 0x00, 0xff, 0xfe],
            Duration::from_millis(300),
        )
    })
    .await;
    let s = spec(
        srv.port,
        "",
        "SSL_GET {\n url {\n path /\n }\n connect_timeout 1\n }",
    );
    assert!(!attempt(&s).await.up);
    // A real TLS server with a hostile reply inside the session.
    let srv = tls_server(|_| Behaviour::Reply(b"HTTP/1.1 9999999999 X\r\n\r\n".to_vec())).await;
    let s = spec(
        srv.port,
        "",
        "SSL_GET {\n url {\n path /\n }\n connect_timeout 2\n }",
    );
    let o = attempt(&s).await;
    assert!(!o.up);
    assert!(o.detail.contains("bad status line"), "{}", o.detail);
}

#[tokio::test]
async fn genhash_matches_md5sum() {
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let want = md5sum(&body);
    let b = body.clone();
    let srv = http_server(move |_| Behaviour::Reply(response("200 OK", &b))).await;
    let url = format!("http://127.0.0.1:{}/index.html", srv.port);
    assert_eq!(genhash(&[url]).await.unwrap(), want);
    let args: Vec<String> = [
        "-s",
        "127.0.0.1",
        "-p",
        &srv.port.to_string(),
        "-u",
        "/x",
        "-V",
        "www.example.com",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(genhash(&args).await.unwrap(), want);
    let reqs = srv.requests.lock().unwrap().clone();
    assert!(
        reqs[0].starts_with("GET /index.html HTTP/1.0\r\n"),
        "{:?}",
        reqs[0]
    );
    assert!(
        reqs[1].contains("\r\nHost: www.example.com\r\n"),
        "{:?}",
        reqs[1]
    );

    // Over TLS.
    let b = body.clone();
    let tls = tls_server(move |_| Behaviour::Reply(response("200 OK", &b))).await;
    let url = format!("https://127.0.0.1:{}/", tls.port);
    assert_eq!(genhash(&[url]).await.unwrap(), want);

    // Errors are messages, not panics.
    assert!(genhash(&["ftp://x/".to_owned()]).await.is_err());
    let dead = check_support::closed_port().await;
    assert!(genhash(&[format!("http://127.0.0.1:{dead}/")])
        .await
        .is_err());
}

#[tokio::test]
async fn genhash_agrees_with_keepalived() {
    // keepalived's own genhash, when installed, prints the same digest.
    let Ok(out) = std::process::Command::new("keepalived")
        .arg("--version")
        .output()
    else {
        eprintln!("keepalived not installed; skipped");
        return;
    };
    let _ = out;
    let body = b"keepalived genhash interop\n".to_vec();
    let b = body.clone();
    let srv = http_server(move |_| Behaviour::Reply(response("200 OK", &b))).await;
    let port = srv.port.to_string();
    let ours = genhash(&[format!("http://127.0.0.1:{port}/")])
        .await
        .unwrap();
    let theirs = tokio::process::Command::new("keepalived")
        .args(["--genhash", "-s", "127.0.0.1", "-p", &port, "-u", "/"])
        .output()
        .await
        .unwrap();
    let theirs = String::from_utf8_lossy(&theirs.stdout).trim().to_owned();
    assert_eq!(ours, theirs);
}
