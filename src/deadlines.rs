//! Time limits on slow and idle clients.
//!
//! Without them, a client that sends one byte per second (of a request head or of a body),
//! or that opens connections and sends nothing, holds a connection, its task and its
//! buffers for as long as it likes. poem sets no hyper timer, so hyper's own
//! `header_read_timeout` never applies, and poem's `idle_timeout` counts only time with
//! no I/O at all, which a trickle of bytes never leaves. hyper's header timeout would not
//! do either: it starts when hyper begins waiting for a head, which includes the idle time
//! between keep-alive requests, so it cannot give separate header and idle limits.
//!
//! Three limits, each configurable ([`crate::config::ClientTimeoutSettings`]):
//!
//! - **Idle** (keep-alive): from accept, and from the start of each response, until the
//!   first byte of the next request. It also bounds writing a response: a client that does
//!   not read its response is cut off when it runs out.
//! - **Header**: from the first byte of a request to the end of its head.
//! - **Body**: from the end of the head, the whole body must arrive in time. This one lives
//!   in the handler ([`crate::api`]'s body reading, given [`RequestBodyTimeout`] as
//!   request data), because only the handler knows whether and when it reads a body, and
//!   it can answer `408` as problem+json and close the connection.
//!
//! The idle and header limits are enforced here, by [`DeadlineStream`], which wraps every
//! accepted connection ([`DeadlineAcceptor`]) and follows the request/response cycle from
//! the bytes that pass through it, without parsing HTTP (`ConnectionState`):
//!
//! ```text
//!   accept ──▶ Idle ──first byte (not CR/LF)──▶ ReadingHead ──empty line──▶ InRequest
//!               ▲                                   │                           │
//!               └────────── server writes (the response begins) ◀──────────────┘
//! ```
//!
//! In `Idle` the idle deadline runs, in `ReadingHead` the header deadline; `InRequest` has
//! none (the handler bounds the body, and the database its queries). A deadline that
//! passes while hyper waits on a read, or on a write the client does not take, fails that
//! I/O with [`io::ErrorKind::TimedOut`], and hyper drops the connection without an answer:
//! by then the client has sent no request hyper could answer, and bytes written past
//! hyper would garble whatever it still buffers. The deadline is a [`Sleep`] polled
//! whenever the inner I/O is pending, so it fires even when no byte arrives at all.
//!
//! The costs per request are a scan of the head's bytes for its end (one pass, no copy;
//! the body's bytes are not looked at) and one timer reset when the response begins. A
//! head that arrives in one read, the usual case, arms no timer of its own (a
//! connection's first head arrives in two: hyper reads 24 bytes alone to tell HTTP/2
//! apart). A timer is polled as soon as it is set, so that it runs even if hyper does not
//! poll the I/O again before it sleeps (after writing a response, hyper relies on the
//! read it polled before).
//!
//! Limits of the approach, each harmless for the clients this service has:
//!
//! - The head ends at its first empty line, where lines end with LF or CRLF, as httparse
//!   reads them; empty lines before a request are skipped, as httparse skips them, and do
//!   not start the header deadline (so a client cannot dodge it by sending a blank line
//!   first, nor extend an idle connection with them).
//! - A write of exactly `HTTP/1.1 100 Continue` (hyper's answer to `Expect:
//!   100-continue`) is not the response: the body is still to come.
//! - Pipelined requests (a request sent before the previous response) are not told apart
//!   from a body: the next head's bytes may be read while `InRequest`, and its header
//!   deadline may then start early, at the first later read. This can only cut a
//!   pipelining client short, and no client of this API pipelines (browsers do not, nor
//!   do reqwest, httpx or curl).
//! - HTTP/2 with prior knowledge (the connection opens with the preface `PRI *
//!   HTTP/2.0\r\n\r\nSM\r\n\r\n`) multiplexes requests, so its bytes do not follow the
//!   cycle above: such a connection gets the idle limit on inactivity only (no read or
//!   write for that long), like poem's `idle_timeout`. The body limit still applies to
//!   each of its requests; a trickle of frames can hold it. Our clients speak HTTP/1.1.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::metrics::{metrics, TimedOutLabels};

/// The idle and header limits of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the first byte of a request to the end of its head.
    pub header: Duration,
    /// From accept, and from the start of each response, to the next request's first byte.
    pub idle: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        crate::config::ClientTimeoutSettings::default().connection_limits()
    }
}

/// How long the handler waits for a whole request body, from the end of its head. The API
/// gets it as request data (`.data(RequestBodyTimeout(...))`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBodyTimeout(pub Duration);

impl Default for RequestBodyTimeout {
    fn default() -> Self {
        Self(crate::config::ClientTimeoutSettings::default().request_body_timeout())
    }
}

/// Why a connection was cut off: the error its pending I/O fails with
/// ([`io::ErrorKind::TimedOut`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionTimedOut {
    #[error("the request head did not arrive within {0:?} of its first byte")]
    Header(Duration),
    #[error("the connection was idle (no new request, or its response not read) for {0:?}")]
    Idle(Duration),
}

/// Accepts connections from `inner`, each wrapped in a [`DeadlineStream`].
pub struct DeadlineAcceptor<A> {
    inner: A,
    limits: ConnectionLimits,
}

impl<A> DeadlineAcceptor<A> {
    pub fn new(inner: A, limits: ConnectionLimits) -> Self {
        Self { inner, limits }
    }
}

impl<A: Acceptor> Acceptor for DeadlineAcceptor<A> {
    type Io = DeadlineStream<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local_addr, remote_addr, scheme) = self.inner.accept().await?;
        let stream = DeadlineStream::new(io, self.limits, remote_addr.clone());
        Ok((stream, local_addr, remote_addr, scheme))
    }
}

/// Which limit a running deadline enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Header,
    Idle,
    /// HTTP/2: the idle limit, counted from the last read or write.
    Inactivity,
}

/// A connection under the idle and header limits (see the module documentation).
pub struct DeadlineStream<T> {
    inner: T,
    state: ConnectionState,
    limits: ConnectionLimits,
    /// The running deadline, if any; `sleep` is then set to it.
    armed: Option<Limit>,
    sleep: Pin<Box<Sleep>>,
    /// HTTP/2 only: when bytes last moved, which pushes the inactivity deadline back.
    last_activity: Instant,
    /// Once a deadline has passed, every further I/O fails with it.
    timed_out: Option<ConnectionTimedOut>,
    remote_addr: RemoteAddr,
}

impl<T> DeadlineStream<T> {
    fn new(inner: T, limits: ConnectionLimits, remote_addr: RemoteAddr) -> Self {
        let now = Instant::now();
        Self {
            inner,
            state: ConnectionState::default(),
            limits,
            armed: Some(Limit::Idle),
            sleep: Box::pin(tokio::time::sleep_until(now + limits.idle)),
            last_activity: now,
            timed_out: None,
            remote_addr,
        }
    }

    fn apply(&mut self, change: Option<TimerChange>, cx: &mut Context<'_>) {
        match change {
            None => {}
            Some(TimerChange::Stop) => self.armed = None,
            Some(TimerChange::Start(limit)) => {
                let now = Instant::now();
                let duration = match limit {
                    Limit::Header => self.limits.header,
                    Limit::Idle | Limit::Inactivity => self.limits.idle,
                };
                self.sleep.as_mut().reset(now + duration);
                self.last_activity = now;
                self.armed = Some(limit);
                // Register the timer with this task now: hyper may not poll a read or a
                // write that pends before it sleeps (after writing a response it relies
                // on the read it polled before), and a timer never polled never fires.
                // The idle test on a used keep-alive connection caught this.
                if self.sleep.as_mut().poll(cx).is_ready() {
                    cx.waker().wake_by_ref();
                }
            }
        }
    }

    fn note_activity(&mut self) {
        if self.armed == Some(Limit::Inactivity) {
            self.last_activity = Instant::now();
        }
    }

    /// Called while the inner I/O is pending: the error to fail it with once the running
    /// deadline has passed (the task is woken when it does).
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(limit) = self.armed else {
            return Poll::Pending;
        };
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let extended = self.last_activity + self.limits.idle;
            if limit == Limit::Inactivity && extended > Instant::now() {
                self.sleep.as_mut().reset(extended);
                continue;
            }
            break;
        }
        let (error, label) = match limit {
            Limit::Header => (ConnectionTimedOut::Header(self.limits.header), "header"),
            Limit::Idle | Limit::Inactivity => (ConnectionTimedOut::Idle(self.limits.idle), "idle"),
        };
        match error {
            // Every keep-alive connection ends so: not news.
            ConnectionTimedOut::Idle(_) => {
                tracing::debug!(remote_addr = %self.remote_addr, %error, "closing the connection")
            }
            ConnectionTimedOut::Header(_) => {
                tracing::info!(remote_addr = %self.remote_addr, %error, "closing the connection")
            }
        }
        metrics()
            .connections_timed_out
            .get_or_create(&TimedOutLabels { deadline: label })
            .inc();
        self.armed = None;
        self.timed_out = Some(error);
        Poll::Ready(timed_out_error(error))
    }
}

fn timed_out_error(error: ConnectionTimedOut) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, error)
}

impl<T: AsyncRead + Unpin> AsyncRead for DeadlineStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.timed_out {
            return Poll::Ready(Err(timed_out_error(error)));
        }
        let filled_before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[filled_before..];
                if !read.is_empty() {
                    let change = this.state.on_read(read);
                    this.apply(change, cx);
                    this.note_activity();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_deadline(cx).map(Err),
        }
    }
}

/// The first bytes of a write, enough to tell `100 Continue` from a response.
fn write_start(bufs: &[IoSlice<'_>]) -> ([u8; CONTINUE.len() + 1], usize) {
    let mut start = [0; CONTINUE.len() + 1];
    let mut len = 0;
    for buf in bufs {
        let take = buf.len().min(start.len() - len);
        start[len..len + take].copy_from_slice(&buf[..take]);
        len += take;
        if len == start.len() {
            break;
        }
    }
    (start, len)
}

impl<T: AsyncWrite + Unpin> DeadlineStream<T> {
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        write: impl FnOnce(Pin<&mut T>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.timed_out {
            return Poll::Ready(Err(timed_out_error(error)));
        }
        if self.state.expects_response() {
            let (start, len) = write_start(bufs);
            let change = self.state.on_write(&start[..len]);
            self.apply(change, cx);
        }
        match write(Pin::new(&mut self.inner), cx) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.note_activity();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_deadline(cx).map(Err),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DeadlineStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, &[IoSlice::new(buf)], |inner, cx| {
                inner.poll_write(cx, buf)
            })
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, bufs, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.timed_out {
            return Poll::Ready(Err(timed_out_error(error)));
        }
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.poll_deadline(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------------------
// The state machine, apart from I/O and timers so that it can be tested byte by byte.

/// What the first bytes of an HTTP/2 connection with prior knowledge are.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// hyper's interim answer to `Expect: 100-continue`, written as the body is first read.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What a read or write does to the connection's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerChange {
    /// Start this limit's deadline, from now.
    Start(Limit),
    /// No deadline until the next change.
    Stop,
}

/// Where a connection is in its request/response cycle, as far as its bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request: since accept, or since the last response began.
    Idle,
    /// Between a request's first byte and the end of its head.
    ReadingHead(HeadEndScanner),
    /// The head has arrived; no response yet.
    InRequest,
    /// HTTP/2 with prior knowledge: deadlines on inactivity only.
    Http2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConnectionState {
    phase: Phase,
    /// While the connection's first bytes are a prefix of [`HTTP2_PREFACE`], how many of
    /// them; `None` once it is told apart.
    preface_matched: Option<usize>,
}

impl Default for ConnectionState {
    fn default() -> Self {
        Self {
            phase: Phase::Idle,
            preface_matched: Some(0),
        }
    }
}

impl ConnectionState {
    /// Bytes were read from the client.
    fn on_read(&mut self, bytes: &[u8]) -> Option<TimerChange> {
        if bytes.is_empty() {
            return None;
        }
        match self.preface_matched {
            Some(matched) => self.on_first_bytes(matched, bytes),
            None => self.on_http1_read(bytes),
        }
    }

    /// Tells an HTTP/2 preface from an HTTP/1 request, as hyper does, from the first 24
    /// bytes. Until then the bytes count as a head (for the header deadline), unscanned:
    /// the preface itself contains an empty line.
    fn on_first_bytes(&mut self, matched: usize, bytes: &[u8]) -> Option<TimerChange> {
        let expected = &HTTP2_PREFACE[matched..];
        let compared = expected.len().min(bytes.len());
        if bytes[..compared] == expected[..compared] {
            let matched = matched + compared;
            if matched == HTTP2_PREFACE.len() {
                self.preface_matched = None;
                self.phase = Phase::Http2;
                return Some(TimerChange::Start(Limit::Inactivity));
            }
            self.preface_matched = Some(matched);
            return match self.phase {
                Phase::Idle => {
                    self.phase = Phase::ReadingHead(HeadEndScanner::default());
                    Some(TimerChange::Start(Limit::Header))
                }
                _ => None,
            };
        }
        // HTTP/1: scan what was held back, then the rest; the later change wins.
        self.preface_matched = None;
        let held_back = self.on_http1_read(&HTTP2_PREFACE[..matched]);
        self.on_http1_read(bytes).or(held_back)
    }

    fn on_http1_read(&mut self, bytes: &[u8]) -> Option<TimerChange> {
        let mut change = None;
        let mut rest = bytes;
        loop {
            match &mut self.phase {
                Phase::Idle => {
                    // Empty lines before a request are skipped (as httparse does): they
                    // neither start a head nor extend the idle deadline.
                    let Some(start) = rest.iter().position(|b| !matches!(b, b'\r' | b'\n')) else {
                        return change;
                    };
                    self.phase = Phase::ReadingHead(HeadEndScanner::default());
                    change = Some(TimerChange::Start(Limit::Header));
                    rest = &rest[start..];
                }
                Phase::ReadingHead(scanner) => {
                    if scanner.find_end(rest).is_some() {
                        // What follows in this read is body: not looked at.
                        self.phase = Phase::InRequest;
                        // A head read whole arms no timer at all.
                        return Some(TimerChange::Stop);
                    }
                    return change;
                }
                Phase::InRequest | Phase::Http2 => return change,
            }
        }
    }

    /// Whether a write may be the start of a response (and so needs [`Self::on_write`]).
    fn expects_response(&self) -> bool {
        matches!(self.phase, Phase::ReadingHead(_) | Phase::InRequest)
    }

    /// The server writes; `start` is the first bytes of the write (a few more than
    /// [`CONTINUE`], when there are that many).
    fn on_write(&mut self, start: &[u8]) -> Option<TimerChange> {
        match self.phase {
            Phase::InRequest if start == CONTINUE => None,
            // A response (or hyper's refusal of a bad head): the connection is idle from
            // now, and the idle limit also bounds the writing of the response.
            Phase::InRequest | Phase::ReadingHead(_) if !start.is_empty() => {
                self.phase = Phase::Idle;
                Some(TimerChange::Start(Limit::Idle))
            }
            _ => None,
        }
    }
}

/// Finds the end of an HTTP/1 request head, its first empty line, fed one read at a time.
/// Lines end with CRLF or a bare LF, as httparse accepts. It starts at the first byte of
/// the request line (empty lines before it are skipped by the caller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HeadEndScanner {
    at: LinePosition,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum LinePosition {
    /// Within a line.
    #[default]
    InLine,
    /// Just past a line's LF.
    LineStart,
    /// Just past a line's LF and a CR.
    LineStartCr,
}

impl HeadEndScanner {
    /// Scans `bytes`; returns how many of them belong to the head when it ends in them.
    fn find_end(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            if self.at == LinePosition::InLine {
                // Within a line only its LF matters: a plain search, the bulk of the scan
                // (no LF: the head goes on in a later read).
                i += bytes[i..].iter().position(|&b| b == b'\n')? + 1;
                self.at = LinePosition::LineStart;
                continue;
            }
            let byte = bytes[i];
            i += 1;
            self.at = match (self.at, byte) {
                (LinePosition::LineStart | LinePosition::LineStartCr, b'\n') => return Some(i),
                (LinePosition::LineStart, b'\r') => LinePosition::LineStartCr,
                _ => LinePosition::InLine,
            };
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &[u8] = b"POST /v1/events HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n";

    /// Feeds `bytes` split at every position in `splits`, and returns where the head ended
    /// (an offset into `bytes`), if it did.
    fn scan_split(bytes: &[u8], splits: &[usize]) -> Option<usize> {
        let mut scanner = HeadEndScanner::default();
        let mut from = 0;
        for &to in splits.iter().chain(std::iter::once(&bytes.len())) {
            if let Some(end) = scanner.find_end(&bytes[from..to]) {
                return Some(from + end);
            }
            from = to;
        }
        None
    }

    #[test]
    fn the_head_ends_at_its_first_empty_line_across_any_read_boundaries() {
        let mut request = HEAD.to_vec();
        request.extend_from_slice(b"{}\r\n\r\n");
        assert_eq!(scan_split(&request, &[]), Some(HEAD.len()));
        // Every single split, and every pair of splits (which covers the empty line split
        // into each of its parts).
        for a in 0..=request.len() {
            assert_eq!(scan_split(&request, &[a]), Some(HEAD.len()), "split at {a}");
            for b in a..=request.len() {
                assert_eq!(scan_split(&request, &[a, b]), Some(HEAD.len()), "{a}, {b}");
            }
        }
        // One byte per read, as a trickling client sends it.
        let every: Vec<usize> = (1..request.len()).collect();
        assert_eq!(scan_split(&request, &every), Some(HEAD.len()));
    }

    #[test]
    fn bare_lf_line_ends_count_as_httparse_counts_them() {
        for head in [
            &b"GET / HTTP/1.1\nHost: a\n\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\nHost: a\r\n\n",
        ] {
            let mut bytes = head.to_vec();
            bytes.extend_from_slice(b"body\n\n");
            assert_eq!(scan_split(&bytes, &[]), Some(head.len()), "{head:?}");
        }
    }

    #[test]
    fn a_partial_head_has_no_end() {
        for partial in [
            &b"GET / HTTP/1.1"[..],
            b"GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\r",
            b"GET / HTTP/1.1\r\nHost: a\r\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\r\r\n",
            b"",
        ] {
            assert_eq!(scan_split(partial, &[]), None, "{partial:?}");
        }
    }

    /// Runs reads through a fresh state, returning each read's timer change.
    fn reads(state: &mut ConnectionState, chunks: &[&[u8]]) -> Vec<Option<TimerChange>> {
        chunks.iter().map(|chunk| state.on_read(chunk)).collect()
    }

    const START_HEADER: Option<TimerChange> = Some(TimerChange::Start(Limit::Header));
    const START_IDLE: Option<TimerChange> = Some(TimerChange::Start(Limit::Idle));
    const STOP: Option<TimerChange> = Some(TimerChange::Stop);

    #[test]
    fn a_head_read_whole_arms_no_header_deadline() {
        let mut state = ConnectionState::default();
        assert_eq!(reads(&mut state, &[HEAD]), [STOP]);
        assert_eq!(state.phase, Phase::InRequest);
        // The body is not looked at.
        assert_eq!(reads(&mut state, &[b"\r\n\r\n"]), [None]);
        assert_eq!(state.phase, Phase::InRequest);
        assert_eq!(state.on_write(b"HTTP/1.1 202 Accepted\r\n"), START_IDLE);
        assert_eq!(state.phase, Phase::Idle);
        // Further writes of the same response change nothing.
        assert_eq!(state.on_write(b"{\"accepted\":1}"), None);
    }

    #[test]
    fn a_trickled_head_runs_the_header_deadline_until_its_end() {
        let mut state = ConnectionState::default();
        let changes: Vec<_> = HEAD.chunks(1).map(|b| state.on_read(b)).collect();
        assert_eq!(changes[0], START_HEADER);
        assert!(changes[1..HEAD.len() - 1].iter().all(Option::is_none));
        assert_eq!(changes[HEAD.len() - 1], STOP);
        assert_eq!(state.phase, Phase::InRequest);
    }

    #[test]
    fn blank_lines_between_requests_keep_the_connection_idle() {
        let mut state = ConnectionState::default();
        assert_eq!(reads(&mut state, &[b"\r\n", b"\n", b"\r"]), [None; 3]);
        assert_eq!(state.phase, Phase::Idle);
        // Blank lines first cannot end the head early either.
        assert_eq!(
            reads(&mut state, &[b"\n\r\nGET / HTTP/1.1\r\n"]),
            [START_HEADER]
        );
        assert_eq!(reads(&mut state, &[b"\r\n"]), [STOP]);
    }

    #[test]
    fn continue_is_not_the_response() {
        let mut state = ConnectionState::default();
        reads(
            &mut state,
            &[b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"],
        );
        assert_eq!(state.on_write(CONTINUE), None);
        assert_eq!(state.phase, Phase::InRequest);
        // The same bytes followed by more: a response was written along with it.
        let mut state = ConnectionState::default();
        reads(
            &mut state,
            &[b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"],
        );
        let mut both = CONTINUE.to_vec();
        both.push(b'H');
        assert_eq!(state.on_write(&both), START_IDLE);
    }

    #[test]
    fn a_refused_head_makes_the_connection_idle() {
        let mut state = ConnectionState::default();
        assert_eq!(
            reads(&mut state, &[b"GET / HTTP/1.1\r\nX: "]),
            [START_HEADER]
        );
        assert!(state.expects_response());
        assert_eq!(state.on_write(b"HTTP/1.1 431 Request Header"), START_IDLE);
        assert!(!state.expects_response());
    }

    #[test]
    fn the_http2_preface_switches_to_inactivity_in_any_pieces() {
        for split in 0..=HTTP2_PREFACE.len() {
            let mut state = ConnectionState::default();
            let (a, b) = HTTP2_PREFACE.split_at(split);
            let changes = reads(&mut state, &[a, b, b"\0\0\0\x04\0\0\0\0\0"]);
            assert_eq!(state.phase, Phase::Http2, "split at {split}");
            let inactivity = Some(TimerChange::Start(Limit::Inactivity));
            let expected = match split {
                0 => [None, inactivity, None],
                24 => [inactivity, None, None],
                _ => [START_HEADER, inactivity, None],
            };
            assert_eq!(changes, expected, "split at {split}");
            assert!(!state.expects_response());
        }
    }

    #[test]
    fn a_request_that_starts_like_the_preface_is_http1() {
        // Up to the preface's own empty line, then not the preface: hyper reads it as an
        // HTTP/1 head (which it refuses), and so do we.
        let mut state = ConnectionState::default();
        assert_eq!(
            reads(&mut state, &[b"PRI * HTTP/2.0\r\n\r\n"]),
            [START_HEADER]
        );
        assert_eq!(reads(&mut state, &[b"XX"]), [STOP]);
        assert_eq!(state.phase, Phase::InRequest);
        // A method that starts with P.
        let mut state = ConnectionState::default();
        assert_eq!(
            reads(&mut state, &[b"P", b"OST / HTTP/1.1\r\n"]),
            [START_HEADER, None]
        );
        assert!(matches!(state.phase, Phase::ReadingHead(_)));
        assert_eq!(reads(&mut state, &[b"\r\n"]), [STOP]);
        // Blank lines first: not the preface (which must open the connection).
        let mut state = ConnectionState::default();
        assert_eq!(
            reads(&mut state, &[b"\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]),
            [None, STOP]
        );
        assert_eq!(state.phase, Phase::InRequest);
    }
}
