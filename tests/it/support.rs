//! Test support: a real server on an ephemeral 127.0.0.1 port over a temporary data
//! directory, and raw-frame helpers for tests that must not go through the client.

use std::path::Path;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use ferromq::codec::ClientCodec;
use ferromq::proto::{Request, Response};
use ferromq::queue::clock::{Clock, ManualClock, SystemClock};
use ferromq::storage::FsyncMode;
use ferromq::{Client, Config, Server};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// A server running in this process.
pub(crate) struct TestServer {
    pub(crate) server: Server,
    pub(crate) dir: tempfile::TempDir,
    /// The queues' clock when the test moves time by hand.
    pub(crate) manual: Option<Arc<ManualClock>>,
    /// A token for every project, if the server has tokens ([`TestServer::client`]
    /// sends it).
    pub(crate) token: Option<String>,
}

/// Config for a server with the IronMQ API on an ephemeral port and one token,
/// `t`, that reaches every project.
pub(crate) fn with_http(config: &mut Config) {
    config.http_listen = Some("127.0.0.1:0".parse().expect("address"));
    config.auth = ferromq::config::Auth {
        tokens: vec![("t".into(), None)],
        disabled: false,
    };
}

impl TestServer {
    /// This server's IronMQ API as project `project`, with `token` if given.
    pub(crate) fn http(&self, project: &str, token: Option<&str>) -> Http {
        Http {
            addr: self.server.http_addr().expect("http enabled"),
            project: project.into(),
            token: token.map(str::to_owned),
        }
    }

    /// Starts a server with default settings on a fresh data directory.
    pub(crate) async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server whose config `tweak` adjusts.
    pub(crate) async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let (server, token) = start_in(dir.path(), tweak, Arc::new(SystemClock::new())).await;
        TestServer {
            server,
            dir,
            manual: None,
            token,
        }
    }

    /// Starts a server with default settings on the data directory `dir`, which
    /// the test prepared.
    pub(crate) async fn start_in_dir(dir: tempfile::TempDir) -> TestServer {
        let (server, token) = start_in(dir.path(), |_| {}, Arc::new(SystemClock::new())).await;
        TestServer {
            server,
            dir,
            manual: None,
            token,
        }
    }

    /// As [`TestServer::start_with`], on a manual clock: time moves only by
    /// [`TestServer::advance`], and a request observes it (the actors' own timers
    /// never fire), so timed rules are tested without waiting.
    pub(crate) async fn start_manual(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let (server, token) = start_in(dir.path(), tweak, clock.clone()).await;
        TestServer {
            server,
            dir,
            manual: Some(clock),
            token,
        }
    }

    /// Moves the manual clock forward by `ms`.
    pub(crate) fn advance(&self, ms: u64) {
        self.manual
            .as_ref()
            .expect("a server started with start_manual")
            .advance(ms);
    }

    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// A client connection (with the server's all-projects token, if it has one).
    pub(crate) async fn client(&self) -> Client {
        let options = ferromq::client::ConnectOptions {
            token: self.token.clone(),
            ..ferromq::client::ConnectOptions::default()
        };
        Client::connect_with(self.addr(), &options)
            .await
            .expect("connect")
    }

    /// Stops the server gracefully and starts a new one on the same data directory.
    pub(crate) async fn restart(self) -> TestServer {
        self.restart_with(|_| {}).await
    }

    /// As [`TestServer::restart`], with the new server's config adjusted by `tweak`.
    pub(crate) async fn restart_with(self, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let TestServer {
            server,
            dir,
            manual,
            token: _,
        } = self;
        server.shutdown().await;
        let clock: Arc<dyn Clock> = match &manual {
            Some(clock) => clock.clone(),
            None => Arc::new(SystemClock::new()),
        };
        let (server, token) = start_in(dir.path(), tweak, clock).await;
        TestServer {
            server,
            dir,
            manual,
            token,
        }
    }
}

async fn start_in(
    dir: &Path,
    tweak: impl FnOnce(&mut Config),
    clock: Arc<dyn Clock>,
) -> (Server, Option<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        fsync: FsyncMode::Always,
        ..Config::default()
    };
    tweak(&mut config);
    let token = config
        .auth
        .tokens
        .iter()
        .find(|(_, projects)| projects.is_none())
        .map(|(token, _)| token.clone());
    let server = Server::start_with_clock(listener, config, clock)
        .await
        .expect("server start");
    (server, token)
}

/// A minimal HTTP/1.1 client for the IronMQ API tests: one request per connection
/// (`Connection: close`), the response read to the end.
pub(crate) struct Http {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) project: String,
    pub(crate) token: Option<String>,
}

/// One HTTP response: status, Content-Type and the body parsed as JSON.
#[derive(Debug)]
pub(crate) struct HttpReply {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) json: serde_json::Value,
    /// The body as text.
    pub(crate) text: String,
    /// Every header, names in lower case.
    pub(crate) headers: Vec<(String, String)>,
}

impl HttpReply {
    /// The value of header `name` (lower case), if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Http {
    /// `method` on `/3/projects/{project}/{path}` with an optional JSON body.
    pub(crate) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> HttpReply {
        let path = format!("/3/projects/{}/{path}", self.project);
        let body = body.map(|b| b.to_string());
        self.raw(method, &path, body.as_deref(), &[]).await
    }

    /// Any request, with extra header lines (`Name: value`).
    pub(crate) async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[&str],
    ) -> HttpReply {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(self.addr).await.expect("connect http");
        let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("host:"))
        {
            request += "Host: test\r\n";
        }
        if let Some(token) = &self.token {
            request += &format!("Authorization: OAuth {token}\r\n");
        }
        for header in headers {
            request += &format!("{header}\r\n");
        }
        let body = body.unwrap_or("");
        request += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        let text = String::from_utf8(raw).expect("utf-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .expect("status line");
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        let content_type = headers
            .iter()
            .find(|(name, _)| name == "content-type")
            .map(|(_, value)| value.clone());
        let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
        HttpReply {
            status,
            content_type,
            json,
            text: body.to_owned(),
            headers,
        }
    }
}

/// A raw framed connection speaking Request/Response frames.
pub(crate) async fn raw(addr: std::net::SocketAddr) -> Framed<TcpStream, ClientCodec> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    Framed::new(stream, ClientCodec::new(ferromq::codec::DEFAULT_MAX_FRAME))
}

/// Sends one request on a raw connection.
pub(crate) async fn send(conn: &mut Framed<TcpStream, ClientCodec>, request: Request) {
    conn.send(request).await.expect("send");
}

/// Reads the next response, failing the test after 10 s.
pub(crate) async fn recv(conn: &mut Framed<TcpStream, ClientCodec>) -> Option<Response> {
    tokio::time::timeout(std::time::Duration::from_secs(10), conn.next())
        .await
        .expect("response within 10 s")
        .map(|r| r.expect("decodable response"))
}

/// One frame with the given length prefix and payload bytes.
pub(crate) fn frame(len: u32, payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u32(len);
    buf.put_slice(payload);
    buf
}

/// Waits (polling `info`, at most 5 s) until `n` long polls are parked on `queue`;
/// false if that never happens. The server offers no event for it, so this polls.
pub(crate) async fn until_waiting(client: &Client, queue: &str, n: u64) -> bool {
    for _ in 0..500 {
        if client.info(queue).await.expect("info").waiting == n {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// Everything the server sends on `stream` before it closes it (within 10 s).
pub(crate) async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut all),
    )
    .await
    .expect("the server answers and closes within 10 s")
    .expect("read");
    all
}

/// Expects exactly one error frame on `stream`, then its close; returns the
/// response id and the error.
pub(crate) async fn error_then_close(stream: &mut TcpStream) -> (u64, ferromq::proto::Error) {
    use prost::Message as _;
    let all = read_until_closed(stream).await;
    assert!(all.len() >= 4, "a response frame before the close");
    let len = usize::try_from(u32::from_be_bytes(all[..4].try_into().unwrap())).unwrap();
    assert_eq!(all.len(), 4 + len, "exactly one frame, then EOF");
    let resp = Response::decode(&all[4..]).expect("a Response");
    let Some(ferromq::proto::response::Result::Error(err)) = resp.result else {
        panic!("expected an error, got {:?}", resp.result)
    };
    (resp.id, err)
}
