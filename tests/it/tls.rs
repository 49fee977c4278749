//! TLS on both ports, with certificates made by the test (rcgen): a round trip on
//! the binary port and on the HTTP port, and a plaintext client refused on each.
//! (The reload on SIGHUP is tested on the real binary, `tests/cli.rs`.)

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferromq::client::{ClientTls, ConnectOptions};
use ferromq::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestServer;

/// A self-signed certificate for `localhost` and `127.0.0.1` (its own root), written
/// as `NAME.pem` and `NAME.key` in `dir`.
pub(crate) fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("certificate");
    let pem = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&pem, cert.pem()).unwrap();
    std::fs::write(&key, signing_key.serialize_pem()).unwrap();
    (pem, key)
}

fn client_tls(ca: &Path) -> ClientTls {
    ClientTls {
        config: ferromq::tls::client_config(Some(ca)).expect("client config"),
        server_name: "127.0.0.1".into(),
    }
}

/// A server with TLS on both ports, the HTTP API and the token `secret`.
async fn tls_server() -> (TestServer, PathBuf, tempfile::TempDir) {
    tls_server_with(|config| {
        config.http_listen = Some("127.0.0.1:0".parse().unwrap());
        config.auth = "secret".parse().unwrap();
    })
    .await
}

/// A server with TLS (a new certificate, also its root: the returned path) and
/// `tweak`; the directory holds the certificate files.
async fn tls_server_with(
    tweak: impl FnOnce(&mut ferromq::Config),
) -> (TestServer, PathBuf, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    let (pem, key) = certificate(certs.path(), "server");
    let server = TestServer::start_with(|config| {
        config.tls = Some(ferromq::tls::TlsFiles {
            cert: pem.clone(),
            key,
        });
        tweak(config);
    })
    .await;
    (server, pem, certs)
}

#[tokio::test]
async fn the_binary_port_speaks_tls_and_refuses_plaintext() {
    let (server, ca, _certs) = tls_server().await;
    let options = ConnectOptions {
        token: Some("secret".into()),
        tls: Some(client_tls(&ca)),
        ..ConnectOptions::default()
    };
    let client = Client::connect_with(server.addr(), &options).await.unwrap();
    let ids = client.push("jobs", vec!["over tls".into()]).await.unwrap();
    let got = client.reserve("jobs", Default::default()).await.unwrap();
    assert_eq!((got[0].id, &got[0].body[..]), (ids[0], &b"over tls"[..]));

    // A plaintext client gets no protocol answer: its Hello is not a TLS record.
    let plain = Client::connect_with(
        server.addr(),
        &ConnectOptions {
            token: Some("secret".into()),
            ..ConnectOptions::default()
        },
    )
    .await;
    assert!(plain.is_err(), "a plaintext client must not be served");

    // A client that trusts another certificate refuses the server.
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _) = certificate(other.path(), "other");
    let wrong = Client::connect_with(
        server.addr(),
        &ConnectOptions {
            tls: Some(client_tls(&other_ca)),
            ..options.clone()
        },
    )
    .await;
    assert!(wrong.is_err(), "an untrusted certificate is refused");
}

#[tokio::test]
async fn the_http_port_speaks_tls_and_refuses_plaintext() {
    let (server, ca, _certs) = tls_server().await;
    let http = server.server.http_addr().unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&client_tls(&ca).config));
    let tcp = TcpStream::connect(http).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let body = r#"{"messages":[{"body":"hello"}]}"#;
    let request = format!(
        "POST /3/projects/p/queues/q/messages HTTP/1.1\r\nHost: t\r\n\
         Authorization: OAuth secret\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    assert!(answer.contains("\"ids\""), "{answer}");

    // Plaintext HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(http).await.unwrap();
    plain
        .write_all(b"GET /3/projects/p/queues HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_tls_port_at_its_connection_limit_closes_the_next_without_a_handshake() {
    let (server, pem, _certs) = tls_server_with(|config| config.max_connections = 1).await;
    let options = ConnectOptions {
        tls: Some(client_tls(&pem)),
        ..ConnectOptions::default()
    };
    let first = Client::connect_with(server.addr(), &options).await.unwrap();
    let second = Client::connect_with(server.addr(), &options).await;
    assert!(second.is_err(), "over the limit: closed, no handshake");
    // The first is still served, and its slot goes to the next once it closes.
    first.push("jobs", vec!["x".into()]).await.unwrap();
    drop(first);
    // The server sees the first connection close a moment later (no signal tells
    // a client when): retried for up to 5 s.
    let mut served = None;
    for _ in 0..250 {
        match Client::connect_with(server.addr(), &options).await {
            Ok(client) => {
                served = Some(client);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    let third = served.expect("a slot came free");
    assert_eq!(third.info("jobs").await.unwrap().size, 1);
}
