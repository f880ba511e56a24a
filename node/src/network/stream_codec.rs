//! The node's request-response protocols on libp2p streams: catch-up
//! (`/palaver/history/2`) and redeeming an invite (`/palaver/invite/1`).
//! Each carries one request and one response per stream, each the whole
//! stream, read with a hard size limit and decoded by `palaver_proto`;
//! bytes that do not decode fail the stream.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use palaver_proto::history;
use palaver_proto::private::redeem;

/// Reads a whole stream of at most `max` bytes.
async fn read_all<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    io.take(max as u64 + 1).read_to_end(&mut bytes).await?;
    if bytes.len() > max {
        return Err(invalid("message over its size limit"));
    }
    Ok(bytes)
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// A message of one of these protocols: its bytes, and back.
trait Wire: Sized {
    const MAX_BYTES: usize;
    fn to_wire(&self) -> io::Result<Vec<u8>>;
    fn from_wire(bytes: &[u8]) -> io::Result<Self>;
}

impl Wire for history::Request {
    const MAX_BYTES: usize = history::MAX_REQUEST_BYTES;
    fn to_wire(&self) -> io::Result<Vec<u8>> {
        Ok(self.encode())
    }
    fn from_wire(bytes: &[u8]) -> io::Result<Self> {
        Self::decode(bytes).map_err(invalid)
    }
}

impl Wire for history::Response {
    const MAX_BYTES: usize = history::MAX_RESPONSE_BYTES;
    fn to_wire(&self) -> io::Result<Vec<u8>> {
        Ok(self.encode())
    }
    fn from_wire(bytes: &[u8]) -> io::Result<Self> {
        Self::decode(bytes).map_err(invalid)
    }
}

impl Wire for redeem::Request {
    const MAX_BYTES: usize = redeem::MAX_REQUEST_BYTES;
    fn to_wire(&self) -> io::Result<Vec<u8>> {
        self.encode().map_err(invalid)
    }
    fn from_wire(bytes: &[u8]) -> io::Result<Self> {
        Self::decode(bytes).map_err(invalid)
    }
}

impl Wire for redeem::Response {
    const MAX_BYTES: usize = redeem::MAX_RESPONSE_BYTES;
    fn to_wire(&self) -> io::Result<Vec<u8>> {
        self.encode().map_err(invalid)
    }
    fn from_wire(bytes: &[u8]) -> io::Result<Self> {
        Self::decode(bytes).map_err(invalid)
    }
}

/// A codec struct speaking `$request` and `$response` (each [`Wire`]).
macro_rules! stream_codec {
    ($(#[$doc:meta])* $name:ident, $request:ty, $response:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default)]
        pub struct $name;

        impl libp2p::request_response::Codec for $name {
            type Protocol = libp2p::StreamProtocol;
            type Request = $request;
            type Response = $response;

            async fn read_request<T: AsyncRead + Unpin + Send>(
                &mut self,
                _: &libp2p::StreamProtocol,
                io: &mut T,
            ) -> io::Result<$request> {
                <$request>::from_wire(&read_all(io, <$request>::MAX_BYTES).await?)
            }

            async fn read_response<T: AsyncRead + Unpin + Send>(
                &mut self,
                _: &libp2p::StreamProtocol,
                io: &mut T,
            ) -> io::Result<$response> {
                <$response>::from_wire(&read_all(io, <$response>::MAX_BYTES).await?)
            }

            async fn write_request<T: AsyncWrite + Unpin + Send>(
                &mut self,
                _: &libp2p::StreamProtocol,
                io: &mut T,
                request: $request,
            ) -> io::Result<()> {
                io.write_all(&request.to_wire()?).await?;
                io.close().await
            }

            async fn write_response<T: AsyncWrite + Unpin + Send>(
                &mut self,
                _: &libp2p::StreamProtocol,
                io: &mut T,
                response: $response,
            ) -> io::Result<()> {
                io.write_all(&response.to_wire()?).await?;
                io.close().await
            }
        }
    };
}

stream_codec!(
    /// Catch-up, `/palaver/history/2`.
    CatchUpCodec,
    history::Request,
    history::Response
);
stream_codec!(
    /// Redeeming an invite, `/palaver/invite/1`.
    RedeemCodec,
    redeem::Request,
    redeem::Response
);
