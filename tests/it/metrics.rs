//! `/metrics` over HTTP: the per-queue series cap, per-queue counters on a
//! manual clock (lease time-outs), request counts by result code, and the token
//! it needs. (The full exposition is parsed by the Prometheus Python client in
//! `tests/python/test_metrics.py`.)

use bytes::Bytes;
use ferromq::client::ReserveOptions;

use crate::support::{Http, TestServer};

/// The value of the sample `series` (name and labels as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a number"))
}

async fn scrape(server: &TestServer, token: Option<&str>) -> (u16, String) {
    let http = Http {
        addr: server.server.http_addr().expect("http"),
        project: "p".into(),
        token: None,
    };
    let header = token.map(|t| format!("Authorization: Bearer {t}"));
    let headers: Vec<&str> = header.iter().map(String::as_str).collect();
    let reply = http.raw("GET", "/metrics", None, &headers).await;
    (reply.status, reply.text)
}

#[tokio::test]
async fn queues_past_the_cap_are_summed_into_one_series() {
    let server = TestServer::start_with(|config| {
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auth = "all".parse().unwrap();
        config.metrics_max_queues = 2;
    })
    .await;
    let client = server.client().await;
    for (queue, n) in [("a", 1), ("b", 2), ("c", 3), ("d", 4)] {
        let bodies = (0..n).map(|_| Bytes::from_static(b"x")).collect();
        client.push(queue, bodies).await.unwrap();
    }
    // The actors publish after their turn; the push was answered after it.
    let (status, text) = scrape(&server, Some("all")).await;
    assert_eq!(status, 200, "{text}");
    let available = |queue: &str| {
        sample(
            &text,
            &format!("ferromq_queue_available_messages{{queue=\"{queue}\"}}"),
        )
    };
    assert_eq!(available("a"), Some(1.0));
    assert_eq!(available("b"), Some(2.0));
    assert_eq!(available("c"), None, "c is past the cap");
    assert_eq!(available("(other)"), Some(7.0), "c and d summed");
    assert_eq!(
        sample(
            &text,
            "ferromq_queue_pushed_messages_total{queue=\"(other)\"}"
        ),
        Some(7.0)
    );
    assert_eq!(sample(&text, "ferromq_queues"), Some(4.0));
    let series = text
        .lines()
        .filter(|l| l.starts_with("ferromq_queue_messages{"))
        .count();
    assert_eq!(series, 3, "{text}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
}

#[tokio::test]
async fn lease_time_outs_and_error_codes_are_counted() {
    let server = TestServer::start_manual(|config| {
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auth = "all".parse().unwrap();
    })
    .await;
    let client = server.client().await;
    client
        .push(
            "leases",
            vec![Bytes::from_static(b"1"), Bytes::from_static(b"2")],
        )
        .await
        .unwrap();
    let options = ReserveOptions {
        n: 2,
        timeout_ms: 1_000,
        ..ReserveOptions::default()
    };
    assert_eq!(client.reserve("leases", options).await.unwrap().len(), 2);
    server.advance(1_500);
    // The next request to the queue sees the time: both leases have run out.
    let info = client.info("leases").await.unwrap();
    assert_eq!((info.available, info.reserved), (2, 0));
    assert!(client.info("missing").await.is_err());

    let (_, text) = scrape(&server, Some("all")).await;
    let q = |name: &str| sample(&text, &format!("{name}{{queue=\"leases\"}}"));
    assert_eq!(q("ferromq_queue_timed_out_total"), Some(2.0), "{text}");
    assert_eq!(q("ferromq_queue_reservations_total"), Some(2.0));
    assert_eq!(q("ferromq_queue_available_messages"), Some(2.0));
    assert_eq!(q("ferromq_queue_reserved_messages"), Some(0.0));
    assert_eq!(
        sample(
            &text,
            "ferromq_requests_total{protocol=\"binary\",op=\"queue_info\",code=\"QUEUE_NOT_FOUND\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "ferromq_requests_total{protocol=\"binary\",op=\"reserve\",code=\"OK\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn metrics_need_a_token_that_reaches_every_queue() {
    let server = TestServer::start_with(|config| {
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auth = "all".parse().unwrap();
        config
            .auth
            .tokens
            .extend("some=p1".parse::<ferromq::config::Auth>().unwrap().tokens);
    })
    .await;
    assert_eq!(scrape(&server, None).await.0, 401);
    assert_eq!(scrape(&server, Some("wrong")).await.0, 401);
    assert_eq!(
        scrape(&server, Some("some")).await.0,
        401,
        "one project only"
    );
    assert_eq!(scrape(&server, Some("all")).await.0, 200);
}
