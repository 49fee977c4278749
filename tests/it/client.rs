//! The client against a fake server that misbehaves on purpose.

use std::time::Duration;

use ferromq::client::ClientError;
use ferromq::codec::{ServerCodec, DEFAULT_MAX_FRAME};
use ferromq::proto::{self, request::Op, response, Response};
use ferromq::Client;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

/// Regression: a response whose `result` was empty was skipped without removing
/// its waiter, so that call hung until the connection closed.
#[tokio::test]
async fn a_response_without_a_result_fails_its_call_instead_of_hanging_it() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut conn = Framed::new(stream, ServerCodec::new(DEFAULT_MAX_FRAME));
        while let Some(Ok(request)) = conn.next().await {
            let result = match request.op {
                Some(Op::Hello(_)) => Some(response::Result::Hello(proto::HelloOk {
                    version: proto::PROTOCOL_VERSION,
                    server: "fake".into(),
                    max_frame_bytes: 1 << 20,
                    max_body_bytes: 1 << 16,
                })),
                _ => None,
            };
            let reply = Response {
                id: request.id,
                result,
            };
            if conn.send(reply).await.is_err() {
                return;
            }
        }
    });
    let client = Client::connect(addr).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), client.info("q"))
        .await
        .expect("the call ends instead of hanging");
    assert!(
        matches!(outcome, Err(ClientError::Protocol(_))),
        "{outcome:?}"
    );
    // The connection is still usable.
    let again = tokio::time::timeout(Duration::from_secs(5), client.info("q"))
        .await
        .expect("a second call ends too");
    assert!(matches!(again, Err(ClientError::Protocol(_))), "{again:?}");
    drop(client);
    fake.await.unwrap();
}
