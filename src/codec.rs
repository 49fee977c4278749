//! The frame codec, sans I/O: a 4-byte big-endian length, then one protobuf message.
//!
//! [`ProtoCodec`] is a tokio-util `Decoder`/`Encoder` with an explicit frame limit,
//! using the framing of tokio-util's `LengthDelimitedCodec` defaults (u32, big
//! endian, length excludes itself). It is written out here rather than wrapping
//! that codec so that the limit is checked on the header: an oversize frame is
//! reported as [`CodecError::FrameTooLarge`] (with its size) as soon as its 4
//! header bytes arrive, without buffering it.
//! A partial frame is `Ok(None)` ("need more bytes"), not an error. Decoding
//! freezes the frame into `Bytes`, so `bytes` fields (message bodies) are slices of
//! the frame, not copies.
//!
//! ```text
//! +----------------+---------------------------+
//! | length: u32 BE | protobuf message (length) |
//! +----------------+---------------------------+
//! ```

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::proto::{Request, Response};

/// Default frame limit: 8 MiB (one push of 100 bodies of 64 KiB fits).
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;
/// Bytes of the length prefix.
pub const LENGTH_PREFIX: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A length prefix over the limit.
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    FrameTooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame is not a valid protobuf message of the expected type.
    #[error("malformed frame: {0}")]
    Malformed(#[from] prost::DecodeError),
}

/// Decodes `In` frames and encodes `Out` frames.
#[derive(Debug)]
pub struct ProtoCodec<In, Out> {
    max_frame: usize,
    /// Length of the last frame decoded (prefix excluded).
    last_len: usize,
    _types: PhantomData<fn(Out) -> In>,
}

/// What a server reads and writes.
pub type ServerCodec = ProtoCodec<Request, Response>;
/// What a client reads and writes.
pub type ClientCodec = ProtoCodec<Response, Request>;

impl<In, Out> ProtoCodec<In, Out> {
    /// A codec refusing frames longer than `max_frame` bytes (prefix excluded).
    pub fn new(max_frame: usize) -> Self {
        ProtoCodec {
            max_frame,
            last_len: 0,
            _types: PhantomData,
        }
    }

    /// The frame limit.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// The length of the last frame decoded, prefix excluded (what the decoded
    /// message holds on to: its bytes fields share the frame's buffer).
    pub fn last_frame_len(&self) -> usize {
        self.last_len
    }
}

impl<In: prost::Message + Default, Out> Decoder for ProtoCodec<In, Out> {
    type Item = In;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, CodecError> {
        if src.len() < LENGTH_PREFIX {
            return Ok(None);
        }
        let len = usize::try_from((&src[..LENGTH_PREFIX]).get_u32()).unwrap_or(usize::MAX);
        if len > self.max_frame {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        let total = LENGTH_PREFIX + len;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(LENGTH_PREFIX);
        let frame = src.split_to(len).freeze();
        self.last_len = len;
        Ok(Some(In::decode(frame)?))
    }
}

impl<In, Out: prost::Message> Encoder<Out> for ProtoCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, item: Out, dst: &mut BytesMut) -> Result<(), CodecError> {
        let len = item.encoded_len();
        if len > self.max_frame {
            return Err(CodecError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        dst.reserve(LENGTH_PREFIX + len);
        dst.put_u32(u32::try_from(len).map_err(|_| CodecError::FrameTooLarge {
            len,
            max: self.max_frame,
        })?);
        item.encode(dst)
            .map_err(|err| CodecError::Io(std::io::Error::other(err)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{request, Push, PushMessage};
    use bytes::Bytes;

    fn push_request(id: u64, body: &'static [u8]) -> Request {
        Request {
            id,
            op: Some(request::Op::Push(Push {
                queue: "q".into(),
                messages: vec![PushMessage {
                    key: String::new(),
                    priority: None,
                    body: Bytes::from_static(body),
                    delay_ms: 0,
                    push_headers: Vec::new(),
                }],
            })),
        }
    }

    #[test]
    fn should_round_trip_a_request() {
        let mut client = ClientCodec::new(1024);
        let mut server = ServerCodec::new(1024);
        let mut buf = BytesMut::new();
        client.encode(push_request(7, b"hello"), &mut buf).unwrap();
        assert_eq!(
            &buf[..4],
            &(u32::try_from(buf.len() - 4).unwrap()).to_be_bytes()
        );
        let decoded = server.decode(&mut buf).unwrap().unwrap();
        assert_eq!(decoded, push_request(7, b"hello"));
        assert!(buf.is_empty());
    }

    #[test]
    fn should_wait_for_the_rest_of_a_partial_frame() {
        let mut client = ClientCodec::new(1024);
        let mut server = ServerCodec::new(1024);
        let mut whole = BytesMut::new();
        client.encode(push_request(1, b"abc"), &mut whole).unwrap();
        client.encode(push_request(2, b"def"), &mut whole).unwrap();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in whole.iter() {
            buf.put_u8(*byte);
            while let Some(req) = server.decode(&mut buf).unwrap() {
                got.push(req.id);
            }
        }
        assert_eq!(got, vec![1, 2]);
    }

    #[test]
    fn should_refuse_an_oversize_length_prefix_from_its_header_alone() {
        let mut server = ServerCodec::new(1024);
        let mut buf = BytesMut::from(&2000u32.to_be_bytes()[..]);
        match server.decode(&mut buf) {
            Err(CodecError::FrameTooLarge {
                len: 2000,
                max: 1024,
            }) => {}
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
    }

    #[test]
    fn should_report_garbage_as_malformed() {
        let mut server = ServerCodec::new(1024);
        let mut buf = BytesMut::new();
        buf.put_u32(4);
        buf.put_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            server.decode(&mut buf),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn should_slice_bodies_out_of_the_frame_without_copying() {
        let mut client = ClientCodec::new(1 << 20);
        let mut server = ServerCodec::new(1 << 20);
        let mut buf = BytesMut::new();
        client
            .encode(push_request(1, &[7u8; 4096]), &mut buf)
            .unwrap();
        let frame_start = buf.as_ptr() as usize;
        let frame_end = frame_start + buf.len();
        let req = server.decode(&mut buf).unwrap().unwrap();
        let Some(request::Op::Push(push)) = req.op else {
            panic!("not a push")
        };
        let body_at = push.messages[0].body.as_ptr() as usize;
        assert!(body_at >= frame_start && body_at < frame_end);
    }
}
