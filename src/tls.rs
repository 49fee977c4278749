//! TLS for both ports and for the client, with rustls (ring as its crypto).
//!
//! The server side is [`ServerTls`]: the certificate chain and private key read
//! from PEM files named in the configuration (`--tls-cert`, `--tls-key`), one
//! configuration for both ports, replaced whole by [`ServerTls::reload`] (SIGHUP).
//! A connection takes the configuration current at its accept; a reload that fails
//! (a missing file, a key that does not match) is logged and the old configuration
//! stays, so a bad deploy of new files never takes the server off the air.
//!
//! The handshake runs in the connection's own task, bounded by
//! [`HANDSHAKE_TIMEOUT`], so a client that never finishes it holds one connection
//! slot for that long and no more. A connection over `--max-connections` on a TLS
//! port is closed without a word: answering it would cost a handshake per refused
//! connection (`net.rs`).
//!
//! The client side is [`client_config`]: the roots are a CA file given by the
//! user (`--ca-cert`), or else the system's certificate store; push deliveries to
//! `https` subscribers use [`subscriber_client_config`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server's certificate chain and key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refused the material (a key that does not match the certificate…).
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file.
///
/// # Errors
/// If the file cannot be read or holds no certificate.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|err| file_error(path, err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| file_error(path, err))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE in the file"));
    }
    Ok(certs)
}

fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|err| file_error(&files.key, format!("no usable private key: {err}")))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Config(err.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| TlsError::Config(err.to_string()))?;
    Ok(Arc::new(config))
}

/// The server's TLS configuration, shared by both ports; see the module docs.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl ServerTls {
    /// Reads the certificate and key.
    ///
    /// # Errors
    /// If either cannot be read or they do not belong together.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsError> {
        let config = server_config(&files)?;
        Ok(ServerTls {
            files,
            current: RwLock::new(config),
        })
    }

    /// Reads the files again and, if they are good, serves new connections with
    /// them; on error the configuration in use stays.
    ///
    /// # Errors
    /// As [`ServerTls::load`].
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        Ok(())
    }

    /// An acceptor with the configuration in use now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        TlsAcceptor::from(Arc::clone(&config))
    }
}

/// The server side of a handshake on an accepted connection, within
/// [`HANDSHAKE_TIMEOUT`]; `None` (logged at debug) if it failed, timed out, or the
/// server is stopping.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    stop: &CancellationToken,
) -> Option<TlsStream<TcpStream>> {
    let done = tokio::select! {
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => done,
        () = stop.cancelled() => return None,
    };
    match done {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(err)) => {
            tracing::debug!(%peer, cause = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// A client configuration trusting the certificates in `ca_cert` (PEM), or the
/// system's roots when it is `None`.
///
/// # Errors
/// If the CA file cannot be read, or no root at all could be found.
pub fn client_config(ca_cert: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_cert {
        Some(path) => {
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|err| file_error(path, format!("not a CA certificate: {err}")))?;
            }
        }
        None => {
            roots = system_roots();
            if roots.is_empty() {
                return Err(TlsError::Config(
                    "no CA certificates found in the system's store: give --ca-cert".into(),
                ));
            }
        }
    }
    config_with_roots(roots)
}

/// The system's roots (certificates rustls cannot use skipped).
fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

/// The client configuration of push deliveries to `https` subscribers: the
/// system's roots, or the Mozilla roots built into the binary (webpki-roots) on a
/// system that has none (a scratch container), and the certificates in `extra`
/// (`--push-ca-cert`: a private CA of the operator's subscribers).
///
/// # Errors
/// If `extra` cannot be read or holds no CA certificate, or rustls refuses the
/// configuration.
pub fn subscriber_client_config(
    extra: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = system_roots();
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(path) = extra {
        for cert in read_certs(path)? {
            roots
                .add(cert)
                .map_err(|err| file_error(path, format!("not a CA certificate: {err}")))?;
        }
    }
    config_with_roots(roots)
}

fn config_with_roots(roots: rustls::RootCertStore) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Config(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A server connection, plain or TLS: one type, so that each front end's
/// connection code is compiled once (hyper's HTTP/1 machinery twice over was most
/// of the ~2 MB TLS first added to the binary).
pub(crate) enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

/// The reading half of a [`Conn`]: plain TCP keeps tokio's lock-free split.
pub(crate) enum ReadHalf {
    /// Plain TCP.
    Plain(tokio::net::tcp::OwnedReadHalf),
    /// TLS over TCP.
    Tls(tokio::io::ReadHalf<Box<TlsStream<TcpStream>>>),
}

/// The writing half of a [`Conn`].
pub(crate) enum WriteHalf {
    /// Plain TCP.
    Plain(tokio::net::tcp::OwnedWriteHalf),
    /// TLS over TCP.
    Tls(tokio::io::WriteHalf<Box<TlsStream<TcpStream>>>),
}

impl Conn {
    /// Splits the connection for a reader and a writer in one task.
    pub(crate) fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Conn::Plain(stream) => {
                let (read, write) = stream.into_split();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
            Conn::Tls(stream) => {
                let (read, write) = tokio::io::split(stream);
                (ReadHalf::Tls(read), WriteHalf::Tls(write))
            }
        }
    }
}

/// Forwards `AsyncRead` to whichever variant `$self` is.
macro_rules! forward_read {
    ($type:ty) => {
        impl tokio::io::AsyncRead for $type {
            fn poll_read(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(io) => std::pin::Pin::new(io).poll_read(cx, buf),
                    Self::Tls(io) => std::pin::Pin::new(io).poll_read(cx, buf),
                }
            }
        }
    };
}

/// Forwards `AsyncWrite` to whichever variant `$self` is.
macro_rules! forward_write {
    ($type:ty) => {
        impl tokio::io::AsyncWrite for $type {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    Self::Plain(io) => std::pin::Pin::new(io).poll_write(cx, buf),
                    Self::Tls(io) => std::pin::Pin::new(io).poll_write(cx, buf),
                }
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    Self::Plain(io) => std::pin::Pin::new(io).poll_write_vectored(cx, bufs),
                    Self::Tls(io) => std::pin::Pin::new(io).poll_write_vectored(cx, bufs),
                }
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    Self::Plain(io) => io.is_write_vectored(),
                    Self::Tls(io) => io.is_write_vectored(),
                }
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(io) => std::pin::Pin::new(io).poll_flush(cx),
                    Self::Tls(io) => std::pin::Pin::new(io).poll_flush(cx),
                }
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                match self.get_mut() {
                    Self::Plain(io) => std::pin::Pin::new(io).poll_shutdown(cx),
                    Self::Tls(io) => std::pin::Pin::new(io).poll_shutdown(cx),
                }
            }
        }
    };
}

forward_read!(Conn);
forward_write!(Conn);
forward_read!(ReadHalf);
forward_write!(WriteHalf);

/// A connection accepted on a port: served as it is, or after a TLS handshake
/// (see [`handshake`]); `None` if the handshake did not complete.
pub(crate) async fn open(
    tls: Option<TlsAcceptor>,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    stop: &CancellationToken,
) -> Option<Conn> {
    match tls {
        None => Some(Conn::Plain(stream)),
        Some(acceptor) => handshake(acceptor, stream, peer, stop)
            .await
            .map(|stream| Conn::Tls(Box::new(stream))),
    }
}
