//! Test support: a real server on an ephemeral 127.0.0.1 port over a temporary data
//! directory, and raw-frame helpers for tests that must not go through the client.

use std::path::Path;

use bytes::{BufMut, BytesMut};
use ferromq::codec::ClientCodec;
use ferromq::proto::{Request, Response};
use ferromq::storage::FsyncMode;
use ferromq::{Client, Config, Server};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

/// A server running in this process.
pub struct TestServer {
    pub server: Server,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with default settings on a fresh data directory.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server whose config `tweak` adjusts.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = start_in(dir.path(), tweak).await;
        TestServer { server, dir }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr()).await.expect("connect")
    }

    /// Stops the server gracefully and starts a new one on the same data directory.
    pub async fn restart(self) -> TestServer {
        let TestServer { server, dir } = self;
        server.shutdown().await;
        let server = start_in(dir.path(), |_| {}).await;
        TestServer { server, dir }
    }
}

async fn start_in(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        fsync: FsyncMode::Always,
        ..Config::default()
    };
    tweak(&mut config);
    Server::start(listener, config).await.expect("server start")
}

/// A raw framed connection speaking Request/Response frames.
pub async fn raw(addr: std::net::SocketAddr) -> Framed<TcpStream, ClientCodec> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    Framed::new(stream, ClientCodec::new(ferromq::codec::DEFAULT_MAX_FRAME))
}

/// Sends one request on a raw connection.
pub async fn send(conn: &mut Framed<TcpStream, ClientCodec>, request: Request) {
    conn.send(request).await.expect("send");
}

/// Reads the next response, failing the test after 10 s.
pub async fn recv(conn: &mut Framed<TcpStream, ClientCodec>) -> Option<Response> {
    tokio::time::timeout(std::time::Duration::from_secs(10), conn.next())
        .await
        .expect("response within 10 s")
        .map(|r| r.expect("decodable response"))
}

/// One frame with the given length prefix and payload bytes.
pub fn frame(len: u32, payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u32(len);
    buf.put_slice(payload);
    buf
}
