//! Checker probes against real servers on 127.0.0.1: TCP_CHECK, HTTP_GET (status ranges,
//! digest, virtualhost), SSL_GET with a self-signed certificate and SNI, MISC_CHECK exit
//! codes and dynamic weight, DNS_CHECK, UDP_CHECK, PING_CHECK, and the runner's retry
//! rule and events.

#![allow(clippy::unwrap_used)]

mod check_support;

use std::time::Duration;

use check_support::{
    closed_port, http_server, response, spec, spec_rs, tls_server, try_spec, Behaviour,
};
use ha_agent::lb::check::runner::{attempt, spawn};
use ha_agent::lb::check::spec::Probe;

const OK_BODY: &[u8] = b"<html>healthy</html>\n";

#[tokio::test]
async fn tcp_check_up_and_down() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let s = spec(port, "", "TCP_CHECK {\n connect_timeout 2\n }");
    assert_eq!(s.probe, Probe::Tcp);
    assert_eq!(s.connect_timeout, Duration::from_secs(2));
    let o = attempt(&s).await;
    assert!(o.up, "{o:?}");
    drop(l);
    let o = attempt(&s).await;
    assert!(!o.up, "{o:?}");
    assert!(o.detail.contains("refused"), "{}", o.detail);
    // connect_port overrides the real server's port.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let p2 = l.local_addr().unwrap().port();
    let s = spec(
        closed_port().await,
        "",
        &format!("TCP_CHECK {{\n connect_port {p2}\n bindto 127.0.0.1\n }}"),
    );
    assert!(attempt(&s).await.up);
}

#[tokio::test]
async fn http_status_codes() {
    let srv = http_server(|i| {
        Behaviour::Reply(match i % 3 {
            0 => response("200 OK", OK_BODY),
            1 => response("503 Service Unavailable", b"down"),
            _ => response("302 Found", b""),
        })
    })
    .await;
    // Default: 200-299.
    let s = spec(
        srv.port,
        "",
        "HTTP_GET {\n url {\n path /health\n }\n connect_timeout 2\n }",
    );
    let o = attempt(&s).await;
    assert!(o.up, "{o:?}");
    let o = attempt(&s).await;
    assert!(!o.up);
    assert!(o.detail.contains("status 503"), "{}", o.detail);
    let o = attempt(&s).await;
    assert!(!o.up, "302 is outside the default 200-299");
    // Ranges.
    let s = spec(
        srv.port,
        "",
        "HTTP_GET {\n url {\n path /health\n status_code 200 300-399\n }\n connect_timeout 2\n }",
    );
    assert!(attempt(&s).await.up); // 200
    assert!(!attempt(&s).await.up); // 503
    assert!(attempt(&s).await.up); // 302
    let reqs = srv.requests.lock().unwrap().clone();
    assert!(
        reqs[0].starts_with(&format!(
            "GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 127.0.0.1:{}\r\n",
            srv.port
        )),
        "{:?}",
        reqs[0]
    );
}

#[tokio::test]
async fn http_digest_and_virtualhost() {
    let srv = http_server(|_| Behaviour::Reply(response("200 OK", OK_BODY))).await;
    let good = check_support::md5sum(OK_BODY);
    let s = spec_rs(
        srv.port,
        "",
        "virtualhost www.example.com",
        &format!("HTTP_GET {{\n url {{\n path /\n digest {good}\n }}\n }}"),
    );
    let o = attempt(&s).await;
    assert!(o.up, "{o:?}");
    let bad = "0123456789abcdef0123456789abcdef";
    let s = spec(
        srv.port,
        "",
        &format!("HTTP_GET {{\n url {{\n path /\n digest {bad}\n virtualhost vhost.example.com\n }}\n }}"),
    );
    let o = attempt(&s).await;
    assert!(!o.up);
    assert!(o.detail.contains("digest mismatch"), "{}", o.detail);
    let reqs = srv.requests.lock().unwrap().clone();
    assert!(
        reqs[0].contains("\r\nHost: www.example.com\r\n"),
        "{:?}",
        reqs[0]
    );
    assert!(
        reqs[1].contains("\r\nHost: vhost.example.com\r\n"),
        "{:?}",
        reqs[1]
    );
    // Every url must pass.
    let s = spec(
        srv.port,
        "",
        &format!("HTTP_GET {{\n url {{\n path /a\n }}\n url {{\n path /b\n digest {bad}\n }}\n }}"),
    );
    assert!(!attempt(&s).await.up);
}

#[tokio::test]
async fn http_chunked_body_digest() {
    let body = b"Wikipedia";
    let srv = http_server(|_| {
        Behaviour::Reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"
                .to_vec(),
        )
    })
    .await;
    let d = check_support::md5sum(body);
    let s = spec(
        srv.port,
        "",
        &format!("HTTP_GET {{\n url {{\n digest {d}\n }}\n http_protocol 1.1\n }}"),
    );
    let o = attempt(&s).await;
    assert!(o.up, "{o:?}");
    assert!(srv.requests.lock().unwrap()[0].contains("HTTP/1.1\r\n"));
}

#[tokio::test]
async fn ssl_get_self_signed_with_sni() {
    let srv = tls_server(|_| Behaviour::Reply(response("200 OK", OK_BODY))).await;
    let d = check_support::md5sum(OK_BODY);
    let s = spec(
        srv.port,
        "",
        &format!("SSL_GET {{\n url {{\n path /tls\n digest {d}\n virtualhost www.example.com\n }}\n connect_timeout 3\n }}"),
    );
    let o = attempt(&s).await;
    assert!(o.up, "{o:?}");
    assert_eq!(
        srv.sni.lock().unwrap()[0].as_deref(),
        Some("www.example.com")
    );
    assert!(srv.requests.lock().unwrap()[0].starts_with("GET /tls HTTP/1.0\r\n"));
    // Without a virtualhost the connect address is the name: no SNI for an IP.
    let s = spec(srv.port, "", "SSL_GET {\n url {\n path /\n }\n }");
    assert!(attempt(&s).await.up);
    assert_eq!(srv.sni.lock().unwrap()[1], None);
}

#[tokio::test]
async fn misc_check_exit_codes_and_dynamic_weight() {
    let s = spec(
        80,
        "",
        "MISC_CHECK {\n misc_path \"/bin/sh -c 'exit 0'\"\n misc_timeout 5\n }",
    );
    assert_eq!(s.retry, 0, "keepalived's MISC_CHECK default retry is 0");
    assert!(attempt(&s).await.up);
    let s = spec(
        80,
        "",
        "MISC_CHECK {\n misc_path \"/bin/sh -c 'exit 3'\"\n }",
    );
    let o = attempt(&s).await;
    assert!(!o.up);
    assert_eq!(o.detail, "exit 3");
    let s = spec(
        80,
        "",
        "MISC_CHECK {\n misc_path \"/bin/sh -c 'exit 7'\"\n misc_dynamic\n }",
    );
    let o = attempt(&s).await;
    assert!(o.up);
    assert_eq!(o.weight, Some(5));
    let s = spec(
        80,
        "",
        "MISC_CHECK {\n misc_path \"/bin/sh -c 'exit 1'\"\n misc_dynamic\n }",
    );
    assert!(!attempt(&s).await.up);
    // A hung script is killed at misc_timeout.
    let s = spec(
        80,
        "",
        "MISC_CHECK {\n misc_path \"/bin/sleep 30\"\n misc_timeout 0.3\n }",
    );
    let o = attempt(&s).await;
    assert!(!o.up);
    assert!(o.detail.contains("timed out"), "{}", o.detail);

    // The event carries the dynamic weight.
    let s = spec(
        80,
        "",
        "MISC_CHECK {\n misc_path \"/bin/sh -c 'exit 12'\"\n misc_dynamic\n }",
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = spawn(s, tx);
    let ev = rx.recv().await.unwrap();
    h.abort();
    assert!(ev.up);
    assert_eq!(ev.kind, "MISC_CHECK");
    assert!(ev.detail.ends_with("dynamic_weight=10"), "{}", ev.detail);
}

#[tokio::test]
async fn retry_keeps_a_briefly_failing_server_up() {
    // First request fails, every later one succeeds.
    let srv = http_server(|i| {
        Behaviour::Reply(if i == 0 {
            response("503 Busy", b"")
        } else {
            response("200 OK", OK_BODY)
        })
    })
    .await;
    let s = spec(
        srv.port,
        "",
        "HTTP_GET {\n url {\n path /\n }\n retry 1\n delay_before_retry 0.1\n }",
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = spawn(s, tx);
    let ev = rx.recv().await.unwrap();
    assert!(ev.up, "{ev:?}");
    assert_eq!(srv.count(), 2);
    h.abort();

    // Same server behaviour with retry 0: the first failure counts.
    let srv = http_server(|i| {
        Behaviour::Reply(if i == 0 {
            response("503 Busy", b"")
        } else {
            response("200 OK", OK_BODY)
        })
    })
    .await;
    let s = spec(
        srv.port,
        "",
        "HTTP_GET {\n url {\n path /\n }\n retry 0\n }",
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = spawn(s, tx);
    let ev = rx.recv().await.unwrap();
    assert!(!ev.up);
    assert_eq!(ev.detail, "/: status 503");
    // Down servers are not retried: the next round (delay_loop 1) brings it up.
    let ev = rx.recv().await.unwrap();
    assert!(ev.up);
    h.abort();
}

#[tokio::test]
async fn failure_needs_retry_plus_one_attempts() {
    let srv = http_server(|_| Behaviour::Reply(response("500 Broken", b""))).await;
    let s = spec(
        srv.port,
        "",
        "HTTP_GET {\n url {\n path /\n }\n nb_get_retry 2\n delay_before_retry 0.05\n }",
    );
    assert_eq!(s.retry, 2);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let h = spawn(s, tx);
    let ev = rx.recv().await.unwrap();
    assert!(!ev.up);
    assert_eq!(srv.count(), 3);
    h.abort();
}

#[tokio::test]
async fn inherited_options() {
    let s = spec_rs(
        80,
        "delay_loop 3\n connect_timeout 4\n retry 5",
        "delay_before_retry 0.5\n warmup 2",
        "TCP_CHECK {\n }",
    );
    assert_eq!(s.delay_loop, Duration::from_secs(3));
    assert_eq!(s.connect_timeout, Duration::from_secs(4));
    assert_eq!(s.retry, 5);
    assert_eq!(s.delay_before_retry, Duration::from_millis(500));
    assert_eq!(s.warmup, Duration::from_secs(2));
}

/// A DNS server answering every query with `rcode` and `ancount`.
async fn dns_server(rcode: u8, ancount: u16) -> u16 {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let mut r = buf[..n].to_vec();
            r[2] |= 0x80;
            r[3] = (r[3] & 0xf0) | rcode;
            r[6..8].copy_from_slice(&ancount.to_be_bytes());
            let _ = sock.send_to(&r, from).await;
        }
    });
    port
}

#[tokio::test]
async fn dns_check() {
    let up = dns_server(0, 1).await;
    let s = spec(
        up,
        "",
        "DNS_CHECK {\n type A\n name www.example.com\n connect_timeout 2\n }",
    );
    let o = attempt(&s).await;
    assert!(o.up, "{o:?}");
    let nx = dns_server(3, 0).await;
    let s = spec(nx, "", "DNS_CHECK {\n connect_timeout 2\n }");
    let o = attempt(&s).await;
    assert!(!o.up);
    assert!(o.detail.contains("rcode 3"), "{}", o.detail);
    let dead = closed_port().await;
    let s = spec(dead, "", "DNS_CHECK {\n connect_timeout 1\n }");
    assert!(!attempt(&s).await.up);
}

#[tokio::test]
async fn udp_check() {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let mut r = b"PONG ".to_vec();
            r.extend_from_slice(&buf[..n]);
            let _ = sock.send_to(&r, from).await;
        }
    });
    let s = spec(
        port,
        "",
        "UDP_CHECK {\n payload 50494e47\n require_reply 504f4e47\n connect_timeout 2\n }",
    );
    let o = attempt(&s).await;
    assert!(o.up, "{o:?}");
    let s = spec(
        port,
        "",
        "UDP_CHECK {\n require_reply 4e4f\n connect_timeout 2\n }",
    );
    assert!(!attempt(&s).await.up);
    // Nothing listening: ICMP port unreachable.
    let dead = {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.local_addr().unwrap().port()
    };
    let s = spec(dead, "", "UDP_CHECK {\n connect_timeout 2\n }");
    let o = attempt(&s).await;
    assert!(!o.up);
    assert!(o.detail.contains("unreachable"), "{}", o.detail);
}

#[tokio::test]
async fn ping_check_loopback() {
    let s = spec(80, "", "PING_CHECK {\n connect_timeout 2\n }");
    let o = attempt(&s).await;
    assert!(o.up, "{o:?}");
}

#[test]
fn config_errors_name_the_place() {
    let bad = [
        ("HTTP_GET {\n url {\n digest nothex\n }\n }", "digest"),
        ("HTTP_GET {\n url {\n path \"/a b\"\n }\n }", "path"),
        ("HTTP_GET {\n connect_port 80\n }", "no url"),
        (
            "HTTP_GET {\n url {\n status_code 2000\n }\n }",
            "status code",
        ),
        ("SMTP_CHECK {\n }", "not supported"),
        ("MISC_CHECK {\n }", "misc_path"),
        ("DNS_CHECK {\n type BOGUS\n }", "type"),
        ("UDP_CHECK {\n payload xyz\n }", "hex"),
        ("TCP_CHECK {\n bindto 2001:db8::1\n }", "family"),
    ];
    for (block, want) in bad {
        let e = try_spec(80, "", "", block).unwrap_err();
        assert!(e.contains(want), "{block}: {e}");
        assert!(e.contains("check.conf:"), "{e}");
    }
    let s = try_spec(
        80,
        "",
        "",
        "SSL_GET {\n url {\n digest 0123456789ABCDEF0123456789ABCDEF\n }\n }",
    )
    .unwrap();
    let Probe::Http(h) = s.probe else { panic!() };
    assert!(h.tls);
    assert_eq!(h.urls[0].status, None, "digest alone: any status");
    assert_eq!(
        h.urls[0].digest.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(s.target.connect.port(), 80);
}
