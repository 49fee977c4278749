//! A push-queue subscriber for the tests: an HTTP/1.1 server on an ephemeral
//! 127.0.0.1 port that records every request it gets and answers as its script
//! says, per path.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How the subscriber answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// This status.
    Status(u16),
    /// Never (the connection stays open, the request unanswered).
    Hang,
}

/// One request the subscriber got.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    /// The path (`/name`).
    pub(crate) path: String,
    /// The headers, names in lower case.
    pub(crate) headers: HashMap<String, String>,
    /// The raw body.
    pub(crate) body: Bytes,
    /// When it arrived.
    pub(crate) at: Instant,
}

impl Hit {
    /// Header `name` (lower case).
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

/// A running subscriber server.
pub(crate) struct Hook {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    hits: mpsc::UnboundedReceiver<Hit>,
    /// Per path: the answers in order; the last one repeats.
    script: Arc<Mutex<HashMap<String, Vec<Reply>>>>,
    served: Arc<Mutex<HashMap<String, usize>>>,
    https: bool,
}

impl Hook {
    /// Starts a subscriber server; every path answers 200 until scripted.
    pub(crate) async fn start() -> Hook {
        Self::start_with(None).await
    }

    /// As [`Hook::start`], serving HTTPS with this certificate and key.
    pub(crate) async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Hook {
        let tls = ferromq::tls::ServerTls::load(ferromq::tls::TlsFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
        .expect("hook certificate");
        let mut hook = Self::start_with(Some(tls.acceptor())).await;
        hook.https = true;
        hook
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind hook");
        let addr = listener.local_addr().expect("hook addr");
        let (tx, hits) = mpsc::unbounded_channel();
        let script: Arc<Mutex<HashMap<String, Vec<Reply>>>> = Arc::default();
        let served: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (s, n) = (Arc::clone(&script), Arc::clone(&served));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (tx, script, served) = (tx.clone(), Arc::clone(&s), Arc::clone(&n));
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (tx, script, served) =
                                (tx.clone(), Arc::clone(&script), Arc::clone(&served));
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let path = parts.uri.path().to_owned();
                                let headers = parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                    })
                                    .collect();
                                let reply = {
                                    let mut served = served.lock().unwrap();
                                    let count = served.entry(path.clone()).or_insert(0);
                                    let script = script.lock().unwrap();
                                    let replies = script.get(&path).cloned().unwrap_or_default();
                                    let reply = replies
                                        .get(*count)
                                        .or(replies.last())
                                        .copied()
                                        .unwrap_or(Reply::Status(200));
                                    *count += 1;
                                    reply
                                };
                                let _ = tx.send(Hit {
                                    path,
                                    headers,
                                    body,
                                    at: Instant::now(),
                                });
                                let status = match reply {
                                    Reply::Status(status) => status,
                                    Reply::Hang => {
                                        std::future::pending::<()>().await;
                                        500
                                    }
                                };
                                Ok::<_, std::convert::Infallible>(
                                    hyper::Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::from(format!("answer {status}"))))
                                        .expect("response"),
                                )
                            }
                        });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(tls) => {
                            // A client that refuses the certificate ends here.
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                    }
                });
            }
        });
        Hook {
            addr,
            hits,
            script,
            served,
            https: false,
        }
    }

    /// The URL of path `/name`.
    pub(crate) fn url(&self, name: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/{name}", self.addr)
    }

    /// Path `/name` answers `replies` in order from its next request on (the
    /// last repeats).
    pub(crate) fn script(&self, name: &str, replies: &[Reply]) {
        let path = format!("/{name}");
        self.served.lock().unwrap().remove(&path);
        self.script.lock().unwrap().insert(path, replies.to_vec());
    }

    /// The next request, failing the test if none comes within `within`.
    pub(crate) async fn next(&mut self, within: Duration) -> Hit {
        tokio::time::timeout(within, self.hits.recv())
            .await
            .expect("a delivery in time")
            .expect("the hook runs")
    }

    /// The next request within `within`, if any.
    pub(crate) async fn next_within(&mut self, within: Duration) -> Option<Hit> {
        tokio::time::timeout(within, self.hits.recv())
            .await
            .ok()
            .flatten()
    }
}

/// One HTTP/1.1 request to `addr` (`Connection: close`): the status and body.
pub(crate) async fn http_call(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect http");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line");
    (status, body.to_owned())
}
