//! Cutting a connection after ingesting (`--drop-rate`): a listener whose connections a handler
//! can break, so that the client sees a reset, not a response.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use axum::Extension;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Marks a response whose connection is to be cut instead of answered.
#[derive(Clone, Copy)]
struct CutMark;

/// A response to cut: [`serve`] closes the connection instead of writing it. Served
/// otherwise, it declares more bytes than it sends, and the client waits for the rest until
/// it times out. (Its body has no known size: hyper's debug builds panic on a body whose
/// known size contradicts its content-length.)
pub(super) fn cut_connection() -> Response {
    let mut r = Response::builder()
        .status(StatusCode::OK)
        .header("content-length", "1000")
        .body(Body::from_stream(Body::from("{").into_data_stream()))
        .unwrap_or_default();
    r.extensions_mut().insert(CutMark);
    r
}

/// A connection's switch: once thrown, its reads and writes fail and hyper drops it, so the
/// client sees the connection close before any response.
#[derive(Clone, Default)]
pub(super) struct Cutter(Arc<AtomicBool>);

impl Cutter {
    fn cut(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    fn is_cut(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A TCP connection that its [`Cutter`] can break.
pub(super) struct CuttableStream {
    io: tokio::net::TcpStream,
    cutter: Cutter,
}

fn cut_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "connection cut (--drop-rate)",
    )
}

impl AsyncRead for CuttableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.cutter.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.cutter.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.cutter.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Accepts TCP connections that handlers can cut.
pub(super) struct CuttableListener(pub(super) tokio::net::TcpListener);

impl axum::serve::Listener for CuttableListener {
    type Io = CuttableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let cutter = Cutter::default();
        (CuttableStream { io, cutter }, addr)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Connected<IncomingStream<'_, CuttableListener>> for Cutter {
    fn connect_info(stream: IncomingStream<'_, CuttableListener>) -> Self {
        stream.io().cutter.clone()
    }
}

/// The connection's cutter, when the router is served by [`serve`].
pub(super) type ConnCutter = Option<Extension<ConnectInfo<Cutter>>>;

/// Cuts the connection of a response marked so: nothing of it reaches the client.
pub(super) fn deliver(response: Response, conn: ConnCutter) -> Response {
    match conn {
        Some(Extension(ConnectInfo(cutter)))
            if response.extensions().get::<CutMark>().is_some() =>
        {
            cutter.cut();
            StatusCode::OK.into_response()
        }
        _ => response,
    }
}
