//! The HTTP client of push deliveries: hyper-util's pooled client (idle
//! connections kept per subscriber scheme, host and port, so a busy subscriber is
//! reached over a few reused connections) over [`Connector`], which resolves the
//! host, applies the [`Policy`] to every address before connecting to it, and does
//! TLS with rustls for `https` subscribers.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

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

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
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
#[derive(Clone)]
pub struct Connector {
    policy: Arc<Policy>,
    tls: TlsConnector,
}

type Boxed<T> = Pin<Box<dyn Future<Output = Result<T, std::io::Error>> + Send>>;

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = std::io::Error;
    type Future = Boxed<TokioIo<Stream>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(uri).await.map(TokioIo::new) })
    }
}

impl Connector {
    async fn connect(&self, uri: Uri) -> std::io::Result<Stream> {
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
        let tls = self.tls.connect(name, tcp).await?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// The client every delivery goes through.
#[derive(Clone)]
pub struct PushClient {
    client: Client<Connector, Full<Bytes>>,
}

/// What a subscriber did with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status; 0 if there was none (no connection, a timeout).
    pub status: u16,
    /// The start of the answer's body, or what went wrong.
    pub msg: String,
}

impl PushClient {
    /// A client under `policy`, trusting `tls` roots for `https`.
    pub fn new(policy: Arc<Policy>, tls: Arc<rustls::ClientConfig>) -> PushClient {
        let connector = Connector {
            policy,
            tls: TlsConnector::from(tls),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector);
        PushClient { client }
    }

    /// POSTs `request`, waiting at most `timeout` for the whole answer.
    pub async fn post(&self, request: hyper::Request<Full<Bytes>>, timeout: Duration) -> Answer {
        let exchange = async {
            let response = self.client.request(request).await.map_err(|err| {
                // The connector's own error (a refused address) is the useful one.
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
                let mut text = err.to_string();
                while let Some(inner) = source {
                    text = inner.to_string();
                    source = inner.source();
                }
                text
            })?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let msg = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            Ok::<_, String>(Answer { status, msg })
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(msg)) => Answer { status: 0, msg },
            Err(_) => Answer {
                status: 0,
                msg: format!("no answer within {} s", timeout.as_secs_f64()),
            },
        }
    }
}
