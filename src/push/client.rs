//! The HTTP client of push deliveries: hyper's HTTP/1.1 client connections, kept
//! idle per subscriber scheme, host and port (at most [`MAX_IDLE_PER_HOST`], for
//! [`IDLE_TIMEOUT`]), so a busy subscriber is reached over a few reused
//! connections; opened by [`Connector`], which resolves the host, applies the
//! [`Policy`] to every address before connecting to it, and does TLS with rustls
//! for `https` subscribers.
//!
//! (hyper-util's pooled client did the same with ~110 KB more of the binary, which
//! has a 5 MB budget; this is the part of it deliveries use: a checkout that skips
//! connections the subscriber closed, and one new connection when none is left.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::task::TaskTracker;

use super::lock;
use super::policy::Policy;

/// Idle connections kept per subscriber host.
const MAX_IDLE_PER_HOST: usize = 32;
/// How long an idle connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a subscriber's answer read (its start is the failure's `msg`).
pub const MAX_ANSWER: usize = 64 * 1024;

/// A connection to a subscriber.
pub enum Stream {
    /// `http`.
    Plain(TcpStream),
    /// `https` (boxed: the TLS state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Opens subscriber connections: resolve, check every address against the
/// policy, connect to the first allowed one that answers, then TLS for `https`.
pub struct Connector {
    policy: Arc<Policy>,
    /// More roots for `https` (`--push-ca-cert`).
    ca_cert: Option<PathBuf>,
    /// Built at the first `https` delivery: reading the system's roots costs
    /// memory and time a server without `https` subscribers need not spend.
    tls: tokio::sync::OnceCell<TlsConnector>,
}

impl Connector {
    async fn connect(&self, uri: &Uri) -> std::io::Result<Stream> {
        let refused = |why: String| std::io::Error::new(std::io::ErrorKind::PermissionDenied, why);
        let host = uri
            .host()
            .ok_or_else(|| std::io::Error::other("the subscriber URL has no host"))?;
        // `[::1]` in a URL is the address ::1.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        self.policy.check_host(&host).map_err(refused)?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await?
            .collect();
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            if let Err(why) = self.policy.check_addr(&host, addr.ip()) {
                last = Some(refused(why));
                continue;
            }
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(err) => last = Some(err),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            last.unwrap_or_else(|| std::io::Error::other(format!("{host} has no address")))
        })?;
        let _ = tcp.set_nodelay(true);
        if !https {
            return Ok(Stream::Plain(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|err| std::io::Error::other(format!("{host}: {err}")))?;
        let tls = self
            .tls
            .get_or_try_init(|| async {
                let ca_cert = self.ca_cert.clone();
                let config = tokio::task::spawn_blocking(move || {
                    crate::tls::subscriber_client_config(ca_cert.as_deref())
                })
                .await
                .map_err(std::io::Error::other)?
                .map_err(std::io::Error::other)?;
                Ok::<_, std::io::Error>(TlsConnector::from(config))
            })
            .await?;
        let tls = tls.connect(name, tcp).await?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// (https, host, port) of a subscriber.
type Key = (bool, String, u16);

/// An idle connection.
struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// The client every delivery goes through.
pub struct PushClient {
    connector: Connector,
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    swept: Mutex<Instant>,
    /// The connections' tasks (they end when their last handle is dropped).
    tasks: TaskTracker,
}

/// What a subscriber did with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status; 0 if there was none (no connection, a timeout).
    pub status: u16,
    /// The start of the answer's body, or what went wrong.
    pub msg: String,
}

/// An error with its innermost cause, which says what happened (a refused
/// address, a reset connection).
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text = inner.to_string();
        source = inner.source();
    }
    text
}

impl PushClient {
    /// A client under `policy`, trusting the system's roots and those of
    /// `ca_cert` for `https`, running its connections on `tasks`.
    pub fn new(policy: Arc<Policy>, ca_cert: Option<PathBuf>, tasks: TaskTracker) -> PushClient {
        PushClient {
            connector: Connector {
                policy,
                ca_cert,
                tls: tokio::sync::OnceCell::new(),
            },
            idle: Mutex::new(HashMap::new()),
            swept: Mutex::new(Instant::now()),
            tasks,
        }
    }

    /// Closes every idle connection.
    pub fn close(&self) {
        lock(&self.idle).clear();
    }

    /// POSTs `body` with `headers` to `url`, waiting at most `timeout` for the
    /// whole answer.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        timeout: Duration,
    ) -> Answer {
        match tokio::time::timeout(timeout, self.exchange(url, headers, body)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(msg)) => Answer { status: 0, msg },
            Err(_) => Answer {
                status: 0,
                msg: format!("no answer within {} s", timeout.as_secs_f64()),
            },
        }
    }

    async fn exchange(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Answer, String> {
        let uri: Uri = url
            .parse()
            .map_err(|err| format!("bad URL {url:?}: {err}"))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or("the subscriber URL has no host")?
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = match uri.port_u16() {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        };
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let key = (https, host, port);
        let request = || {
            let mut builder =
                hyper::Request::post(path).header(hyper::header::HOST, authority.as_str());
            for (name, value) in headers {
                builder = builder.header(*name, value.as_str());
            }
            builder
                .body(Full::new(body.clone()))
                .map_err(|err| format!("cannot build the request: {err}"))
        };
        // Idle connections first: one the subscriber closed meanwhile fails before
        // anything is sent on it, and the next is tried; then a new one.
        loop {
            let (mut sender, reused) = match self.checkout(&key) {
                Some(sender) => (sender, true),
                None => (self.connect(&uri).await?, false),
            };
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err("the subscriber closed the connection".into());
            }
            let response = match sender.send_request(request()?).await {
                Ok(response) => response,
                Err(err) if reused && err.is_canceled() => continue,
                Err(err) => return Err(chain(&err)),
            };
            let status = response.status().as_u16();
            let answer = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map(|b| b.to_bytes());
            let msg = match &answer {
                Ok(body) => String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
                Err(_) => String::new(),
            };
            // A connection whose answer was read to its end can serve again.
            if answer.is_ok() && !sender.is_closed() {
                self.checkin(key, sender);
            }
            return Ok(Answer { status, msg });
        }
    }

    async fn connect(&self, uri: &Uri) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = self
            .connector
            .connect(uri)
            .await
            .map_err(|err| chain(&err))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| chain(&err))?;
        self.tasks.spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn checkout(&self, key: &Key) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = lock(&self.idle);
        let list = idle.get_mut(key)?;
        while let Some(entry) = list.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.sender);
            }
        }
        None
    }

    fn checkin(&self, key: Key, sender: SendRequest<Full<Bytes>>) {
        let mut idle = lock(&self.idle);
        // Now and then, the connections idle too long on every host go.
        let mut swept = lock(&self.swept);
        if swept.elapsed() >= IDLE_TIMEOUT {
            *swept = Instant::now();
            idle.retain(|_, list| {
                list.retain(|e| !e.sender.is_closed() && e.since.elapsed() < IDLE_TIMEOUT);
                !list.is_empty()
            });
        }
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE_PER_HOST {
            list.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}
