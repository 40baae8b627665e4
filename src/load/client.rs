//! HTTP/1.1 for the load engine: one request, serialised once and sent
//! again and again over kept-alive connections to one address, reused last
//! in, first out (a load holds only as many connections as it has requests
//! in flight); each answer parsed with `httparse` (hyper's parser) and read
//! to its end by the framing rules of RFC 9112 §6.3.
//!
//! Not hyper's client: measured at 100 req/s in a release build, its
//! dispatcher and the channels between a request, its connection task and
//! the body cost about a quarter more CPU than this exchange on the same
//! runtime (see `bench/load.sh`), and a load generator sends one fixed
//! request, so hyper's generality buys nothing here.

use super::stats::{Failure, Shared};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a response head may take.
const MAX_HEAD: usize = 64 << 10;

/// A kept-alive connection and its read buffer.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// One request, sent again and again, and the connections it goes over.
pub(crate) struct Pool {
    addr: SocketAddr,
    request: Vec<u8>,
    /// A HEAD request: its answers have no body whatever they say.
    head: bool,
    idle: Mutex<Vec<Conn>>,
    pub shared: Arc<Shared>,
}

/// The request as it goes on the wire.
pub(crate) fn serialise(method: &str, path: &str, authority: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nhost: {authority}\r\n");
    if !body.is_empty() {
        r.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    } else if matches!(method, "POST" | "PUT" | "PATCH") {
        r.push_str("content-length: 0\r\n");
    }
    r.push_str("\r\n");
    let mut out = r.into_bytes();
    out.extend_from_slice(body);
    out
}

impl Pool {
    pub fn new(
        addr: SocketAddr,
        authority: &str,
        method: &str,
        path: &str,
        body: &[u8],
        shared: Arc<Shared>,
    ) -> Pool {
        Pool {
            addr,
            request: serialise(method, path, authority, body),
            head: method == "HEAD",
            idle: Mutex::new(Vec::new()),
            shared,
        }
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let stream = TcpStream::connect(self.addr).await.map_err(|e| {
            self.shared.cause(Failure::Connect, &e);
            Failure::Connect
        })?;
        let _ = stream.set_nodelay(true);
        self.shared
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(1024),
        })
    }

    /// Sends the request and reads the whole answer; the HTTP status.
    pub async fn exchange(&self) -> Result<u16, Failure> {
        let idle = self.idle.lock().expect("idle lock").pop();
        let (mut c, reused) = match idle {
            Some(c) => (c, true),
            None => (self.connect().await?, false),
        };
        let answer = match exchange(&mut c.stream, &mut c.buf, &self.request, self.head).await {
            // A kept-alive connection the server closed meanwhile (a
            // restarted fixture), before any byte of an answer: one try on
            // a fresh connection. An answer broken half-way is a failure.
            Err(Broken::Stale) if reused => {
                c = self.connect().await?;
                exchange(&mut c.stream, &mut c.buf, &self.request, self.head).await
            }
            a => a,
        };
        let (status, keep) = answer.map_err(|b| match b {
            Broken::Stale => Failure::Io,
            Broken::Failed(f) => f,
        })?;
        if keep {
            self.idle.lock().expect("idle lock").push(c);
        }
        Ok(status)
    }
}

/// Reads more of the stream into `buf`; false at its end.
async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<bool, Failure> {
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(4096);
    }
    let n = s.read_buf(buf).await.map_err(|_| Failure::Io)?;
    Ok(n > 0)
}

/// Drops the first `n` bytes of `buf`.
fn consume(buf: &mut Vec<u8>, n: usize) {
    buf.drain(..n.min(buf.len()));
}

/// Why an exchange ended without an answer.
#[derive(Debug, PartialEq)]
pub(crate) enum Broken {
    /// Not one byte of an answer came: a kept-alive connection the server
    /// had closed (a restarted service). Safe to send again.
    Stale,
    Failed(Failure),
}

impl From<Failure> for Broken {
    fn from(f: Failure) -> Broken {
        Broken::Failed(f)
    }
}

/// One exchange on `s`: writes `request`, reads one answer to its end.
/// The status, and whether the connection may carry another request.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
    request: &[u8],
    head_only: bool,
) -> Result<(u16, bool), Broken> {
    buf.clear();
    if s.write_all(request).await.is_err() {
        return Err(Broken::Stale);
    }
    let mut answered = false;
    loop {
        // The head (1xx interim answers are skipped).
        let (status, off, framing, keep) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(buf) {
                Ok(httparse::Status::Complete(off)) => {
                    let status = r.code.unwrap_or(0);
                    break (status, off, framing(&r, head_only), keeps_alive(&r));
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {
                    let more = match fill(s, buf).await {
                        Ok(more) => more,
                        Err(_) if !answered && buf.is_empty() => return Err(Broken::Stale),
                        Err(e) => return Err(e.into()),
                    };
                    if !more {
                        return Err(if !answered && buf.is_empty() {
                            Broken::Stale
                        } else {
                            Failure::Io.into()
                        });
                    }
                    answered = true;
                }
                _ => return Err(Failure::Io.into()),
            }
        };
        consume(buf, off);
        if (100..200).contains(&status) {
            continue;
        }
        // The whole body is read whatever happens to the connection after:
        // an answer ends with its body, not its head.
        let delimited = match framing {
            Framing::None => true,
            Framing::Length(n) => {
                while (buf.len() as u64) < n {
                    if !fill(s, buf).await? {
                        return Err(Failure::Io.into());
                    }
                }
                true
            }
            Framing::Chunked => {
                chunked(s, buf).await?;
                true
            }
            Framing::Close => {
                while fill(s, buf).await? {
                    buf.clear();
                }
                false
            }
        };
        return Ok((status, keep && delimited));
    }
}

/// How an answer's body ends (RFC 9112 §6.3).
#[derive(Debug, PartialEq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    /// At the connection's close.
    Close,
}

fn header<'a>(r: &'a httparse::Response, name: &str) -> Option<&'a [u8]> {
    r.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn framing(r: &httparse::Response, head_only: bool) -> Framing {
    let status = r.code.unwrap_or(0);
    if head_only || (100..200).contains(&status) || status == 204 || status == 304 {
        return Framing::None;
    }
    if let Some(te) = header(r, "transfer-encoding") {
        let chunked = String::from_utf8_lossy(te)
            .rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        return if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        };
    }
    match header(r, "content-length").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
    {
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    }
}

fn keeps_alive(r: &httparse::Response) -> bool {
    let conn = header(r, "connection")
        .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
        .unwrap_or_default();
    if r.version == Some(0) {
        conn.contains("keep-alive")
    } else {
        !conn.contains("close")
    }
}

/// Reads a chunked body and its trailers to their end.
async fn chunked<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Result<(), Failure> {
    loop {
        let size = loop {
            match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((off, size))) => {
                    consume(buf, off);
                    break size;
                }
                Ok(httparse::Status::Partial) => {
                    if !fill(s, buf).await? {
                        return Err(Failure::Io);
                    }
                }
                Err(_) => return Err(Failure::Io),
            }
        };
        if size == 0 {
            // Trailer lines, then an empty line.
            loop {
                match buf.windows(2).position(|w| w == b"\r\n") {
                    Some(0) => {
                        consume(buf, 2);
                        return Ok(());
                    }
                    Some(i) => consume(buf, i + 2),
                    None => {
                        if !fill(s, buf).await? {
                            return Err(Failure::Io);
                        }
                    }
                }
            }
        }
        // The chunk and its CRLF.
        let need = size.saturating_add(2);
        while (buf.len() as u64) < need {
            if !fill(s, buf).await? {
                return Err(Failure::Io);
            }
        }
        consume(buf, need as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answer = Result<(u16, bool), Broken>;

    /// Runs one exchange against a server that answers `answer` (in pieces
    /// of `piece` bytes, to split heads and chunks across reads).
    async fn against(answer: &'static str, piece: usize, head: bool) -> (Answer, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        let srv = tokio::spawn(async move {
            let mut req = vec![0u8; 256];
            let n = server.read(&mut req).await.unwrap();
            // The client may stop reading once it has its answer.
            for c in answer.as_bytes().chunks(piece) {
                if server.write_all(c).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            req.truncate(n);
            req
        });
        let mut buf = Vec::new();
        let r = exchange(
            &mut client,
            &mut buf,
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
            head,
        )
        .await;
        drop(client);
        (r, srv.await.unwrap())
    }

    #[tokio::test]
    async fn every_framing_reads_to_the_end() {
        for piece in [1, 7, 4096] {
            let cases: [(&'static str, bool, Answer); 10] = [
                ("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false, Ok((200, true))),
                ("HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n3\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n", false, Ok((503, true))),
                ("HTTP/1.1 204 No Content\r\n\r\n", false, Ok((204, true))),
                ("HTTP/1.1 200 OK\r\ncontent-length: 99\r\n\r\n", true, Ok((200, true))),
                ("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok", false, Ok((201, true))),
                ("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok", false, Ok((200, false))),
                ("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 9\r\n\r\ncut", false, Err(Broken::Failed(Failure::Io))),
                ("", false, Err(Broken::Stale)),
                ("HTTP/1.0 200 OK\r\n\r\nuntil the end", false, Ok((200, false))),
                ("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", false, Err(Broken::Failed(Failure::Io))),
            ];
            for (answer, head, want) in cases {
                let (got, req) = against(answer, piece, head).await;
                assert_eq!(got, want, "{answer:?} in pieces of {piece}");
                assert_eq!(req, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n");
            }
        }
    }

    #[test]
    fn requests_carry_their_body_and_length() {
        assert_eq!(
            serialise("POST", "/predict?x=1", "127.0.0.1:8000", br#"{"a":1}"#),
            b"POST /predict?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8000\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}".to_vec()
        );
        assert_eq!(
            serialise("PUT", "/", "h", b""),
            b"PUT / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n".to_vec()
        );
    }
}
