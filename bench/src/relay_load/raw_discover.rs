//! Discovers for the load's clients, on the rendezvous wire protocol itself,
//! without checking the records in the answer.
//!
//! libp2p's rendezvous client verifies the signature of every record an
//! answer carries (about 3 ms for 100 records on this machine). A thousand
//! clients discovering six times in the hold made that about 0.6 of a core in
//! this process, taken from the relay the bench measures. What the relay
//! does for a discover does not depend on what the client does with the
//! answer, so the load's clients send the same request (`/rendezvous/1.0.0`,
//! one length-prefixed protobuf `Message` each way) and only count the
//! records. The probes keep libp2p's client, so the latency they time is a
//! real node's, verification included.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::rendezvous::Namespace;

/// The largest answer read; the relay's codec allows the same.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// `Message.type = DISCOVER`.
const DISCOVER: u64 = 3;
/// Field numbers of rendezvous' `rpc.proto` used here.
const MESSAGE_TYPE: u32 = 1;
const MESSAGE_DISCOVER: u32 = 5;
const MESSAGE_DISCOVER_RESPONSE: u32 = 6;
const DISCOVER_NS: u32 = 1;
const DISCOVER_LIMIT: u32 = 2;
const RESPONSE_REGISTRATIONS: u32 = 1;
const RESPONSE_STATUS: u32 = 3;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A discover request, encoded.
#[derive(Debug, Clone)]
pub(super) struct DiscoverRequest(Vec<u8>);

impl DiscoverRequest {
    pub(super) fn new(namespace: &Namespace, limit: u64) -> Self {
        Self::encode(Some(namespace), limit)
    }

    /// A discover with no namespace: every room at once (a relay must refuse it).
    pub(super) fn everything(limit: u64) -> Self {
        Self::encode(None, limit)
    }

    fn encode(namespace: Option<&Namespace>, limit: u64) -> Self {
        let mut discover = Vec::new();
        if let Some(namespace) = namespace {
            put_len_field(&mut discover, DISCOVER_NS, namespace.to_string().as_bytes());
        }
        put_key(&mut discover, DISCOVER_LIMIT, VARINT);
        put_varint(&mut discover, limit);
        let mut message = Vec::new();
        put_key(&mut message, MESSAGE_TYPE, VARINT);
        put_varint(&mut message, DISCOVER);
        put_len_field(&mut message, MESSAGE_DISCOVER, &discover);
        Self(message)
    }
}

/// What a discover answer said, its records counted, not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DiscoverAnswer {
    /// `ResponseStatus`: 0 is OK.
    pub(super) status: u64,
    pub(super) registrations: usize,
}

impl DiscoverAnswer {
    fn decode(message: &[u8]) -> Option<Self> {
        let mut response = None;
        for field in Fields(message) {
            if let (MESSAGE_DISCOVER_RESPONSE, Value::Len(bytes)) = field? {
                response = Some(bytes);
            }
        }
        let mut answer = Self {
            status: 0,
            registrations: 0,
        };
        for field in Fields(response?) {
            match field? {
                (RESPONSE_REGISTRATIONS, Value::Len(_)) => answer.registrations += 1,
                (RESPONSE_STATUS, Value::Varint(status)) => answer.status = status,
                _ => {}
            }
        }
        Some(answer)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

/// The fields of one protobuf message; `None` where it is malformed.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Option<(u32, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_none() {
            self.0 = &[];
        }
        Some(field)
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Option<(u32, Value<'a>)> {
        let key = take_varint(&mut self.0)?;
        let number = u32::try_from(key >> 3).ok()?;
        let value = match (key & 7) as u8 {
            VARINT => Value::Varint(take_varint(&mut self.0)?),
            LEN => {
                let len = usize::try_from(take_varint(&mut self.0)?).ok()?;
                let (bytes, rest) = self.0.split_at_checked(len)?;
                self.0 = rest;
                Value::Len(bytes)
            }
            FIXED64 => {
                self.0 = self.0.get(8..)?;
                Value::Fixed
            }
            FIXED32 => {
                self.0 = self.0.get(4..)?;
                Value::Fixed
            }
            _ => return None,
        };
        Some((number, value))
    }
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_key(out: &mut Vec<u8>, number: u32, wire_type: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire_type));
}

fn put_len_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// Request-response framing of rendezvous: an unsigned-varint length, then
/// the message.
#[derive(Debug, Clone, Default)]
pub(super) struct RawDiscoverCodec;

impl libp2p::request_response::Codec for RawDiscoverCodec {
    type Protocol = StreamProtocol;
    type Request = DiscoverRequest;
    type Response = DiscoverAnswer;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<DiscoverRequest> {
        Err(invalid("the load's clients serve no rendezvous"))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<DiscoverAnswer> {
        let mut len = 0u64;
        for i in 0..10 {
            let mut byte = [0u8];
            io.read_exact(&mut byte).await?;
            len |= u64::from(byte[0] & 0x7f) << (7 * i);
            if byte[0] & 0x80 == 0 {
                break;
            }
        }
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_MESSAGE_BYTES)
            .ok_or_else(|| invalid("discover answer over its size limit"))?;
        let mut message = vec![0; len];
        io.read_exact(&mut message).await?;
        DiscoverAnswer::decode(&message).ok_or_else(|| invalid("malformed discover answer"))
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: DiscoverRequest,
    ) -> io::Result<()> {
        let mut framed = Vec::with_capacity(request.0.len() + 3);
        put_varint(&mut framed, request.0.len() as u64);
        framed.extend_from_slice(&request.0);
        io.write_all(&framed).await?;
        io.flush().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: DiscoverAnswer,
    ) -> io::Result<()> {
        Err(invalid("the load's clients serve no rendezvous"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    #[test]
    fn a_discover_request_encodes_as_the_rendezvous_protobuf_does() {
        let request = DiscoverRequest::new(&Namespace::from_static("ab"), 200);
        // type = 3; discover = { ns = "ab", limit = 200 }
        assert_eq!(
            request.0,
            [0x08, 3, 0x2a, 7, 0x0a, 2, b'a', b'b', 0x10, 0xc8, 0x01]
        );
    }

    #[test]
    fn a_discover_for_everything_has_no_namespace() {
        let request = DiscoverRequest::everything(10_000);
        // type = 3; discover = { limit = 10000 }
        assert_eq!(request.0, [0x08, 3, 0x2a, 3, 0x10, 0x90, 0x4e]);
    }

    #[test]
    fn an_answer_counts_its_records_and_reads_its_status() {
        let mut response = Vec::new();
        for _ in 0..3 {
            put_len_field(&mut response, RESPONSE_REGISTRATIONS, b"record");
        }
        put_len_field(&mut response, 2, b"cookie");
        put_key(&mut response, RESPONSE_STATUS, VARINT);
        put_varint(&mut response, 0);
        let mut message = Vec::new();
        put_key(&mut message, MESSAGE_TYPE, VARINT);
        put_varint(&mut message, 4);
        put_len_field(&mut message, MESSAGE_DISCOVER_RESPONSE, &response);
        assert_eq!(
            DiscoverAnswer::decode(&message),
            Some(DiscoverAnswer {
                status: 0,
                registrations: 3
            })
        );
        assert_eq!(DiscoverAnswer::decode(&message[..message.len() - 1]), None);
        assert_eq!(DiscoverAnswer::decode(&[0x08, 4]), None, "no response");
    }
}
