//! Pure parsing of a real server's HTTP reply: status line, header lines, the head as a
//! whole, body framing and chunked transfer decoding, and `status_code` ranges.
//!
//! Nothing here does I/O or allocates without a bound: the head is capped at
//! [`MAX_HEAD`] bytes, the decoded body at [`MAX_BODY`], a chunk-size line at
//! [`MAX_CHUNK_LINE`]. Every function returns an error on any input it cannot accept and
//! never panics (fuzzed by `fuzz/fuzz_targets/http_reply.rs`). keepalived's
//! CVE-2018-19115 was a heap overflow on an overlong status line; here an overlong line
//! is an ordinary [`ReplyError`].
//!
//! "Incomplete" (need more bytes) is kept apart from "malformed" (an error), as in
//! mini-redis's framing.

use thiserror::Error;

/// Largest accepted status line plus headers, terminator included.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest accepted decoded body (what the digest covers).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Largest accepted chunk-size line (hex size, extensions, CRLF).
pub const MAX_CHUNK_LINE: usize = 256;
/// Most header lines accepted in a head.
pub const MAX_HEADERS: usize = 100;

/// Why a reply is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplyError {
    /// No end of headers within [`MAX_HEAD`] bytes.
    #[error("reply head longer than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// The status line is not `HTTP/x.y NNN [reason]`.
    #[error("bad status line: {0}")]
    BadStatusLine(&'static str),
    /// A header line is not `name: value`.
    #[error("bad header line: {0}")]
    BadHeader(&'static str),
    /// More than [`MAX_HEADERS`] header lines.
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    /// `Content-Length` is not a number, or two of them disagree.
    #[error("bad content-length")]
    BadContentLength,
    /// The body is larger than [`MAX_BODY`].
    #[error("body larger than {MAX_BODY} bytes")]
    BodyTooLarge,
    /// A chunk-size line is malformed or too long.
    #[error("bad chunk: {0}")]
    BadChunk(&'static str),
    /// The connection closed before the announced body ended.
    #[error("reply truncated")]
    Truncated,
}

/// A parsed status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// Major and minor HTTP version.
    pub version: (u8, u8),
    /// Status code, 100..=999.
    pub code: u16,
    /// Reason phrase (lossy UTF-8, may be empty).
    pub reason: String,
}

/// Parse `HTTP/1.1 200 OK` (without its line ending). Exactly three digits are accepted
/// as the code (RFC 9112 §4), so a "10-digit status" is refused, not truncated.
pub fn parse_status_line(line: &[u8]) -> Result<StatusLine, ReplyError> {
    let rest = line
        .strip_prefix(b"HTTP/")
        .ok_or(ReplyError::BadStatusLine("no HTTP/ prefix"))?;
    let (major, minor, rest) = match rest {
        [ma, b'.', mi, rest @ ..] if ma.is_ascii_digit() && mi.is_ascii_digit() => {
            (ma - b'0', mi - b'0', rest)
        }
        _ => return Err(ReplyError::BadStatusLine("bad version")),
    };
    let rest = rest
        .strip_prefix(b" ")
        .ok_or(ReplyError::BadStatusLine("no space after version"))?;
    let (code, rest) = match rest {
        [a, b, c, rest @ ..] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            (code, rest)
        }
        _ => return Err(ReplyError::BadStatusLine("status code is not 3 digits")),
    };
    if code < 100 {
        return Err(ReplyError::BadStatusLine("status code below 100"));
    }
    let reason = match rest {
        [] => &[][..],
        [b' ', reason @ ..] => reason,
        _ => return Err(ReplyError::BadStatusLine("status code is not 3 digits")),
    };
    if reason
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(ReplyError::BadStatusLine("control character in reason"));
    }
    Ok(StatusLine {
        version: (major, minor),
        code,
        reason: String::from_utf8_lossy(reason).into_owned(),
    })
}

/// Parse one header line `Name: value` (without its line ending) into a lowercase name
/// and a trimmed value (RFC 9110 §5). Obsolete line folding is refused (RFC 9112 §5.2).
pub fn parse_header(line: &[u8]) -> Result<(String, String), ReplyError> {
    if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err(ReplyError::BadHeader("obsolete line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ReplyError::BadHeader("no colon"))?;
    let (name, value) = line.split_at(colon);
    let value = value.get(1..).unwrap_or_default();
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(ReplyError::BadHeader("bad field name"));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ReplyError::BadHeader("control character in value"));
    }
    let value = trim(value);
    Ok((
        String::from_utf8_lossy(name).to_ascii_lowercase(),
        String::from_utf8_lossy(value).into_owned(),
    ))
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// How the body of a reply ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// A parsed reply head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status line.
    pub status: StatusLine,
    /// Header fields, names lowercase, in order.
    pub headers: Vec<(String, String)>,
    /// How the body is delimited.
    pub framing: Framing,
}

impl Head {
    /// The first value of a header (name in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Try to parse a head at the start of `buf`. `Ok(None)`: the head is not complete yet
/// (and `buf` is still under [`MAX_HEAD`]); `Ok(Some((head, n)))`: the body starts at
/// `buf[n..]`. Lines may end in CRLF or a bare LF (RFC 9112 §2.2).
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, ReplyError> {
    let window = buf.get(..MAX_HEAD.min(buf.len())).unwrap_or(buf);
    let Some(end) = find_head_end(window) else {
        return if buf.len() >= MAX_HEAD {
            Err(ReplyError::HeadTooLarge)
        } else {
            Ok(None)
        };
    };
    let head = window.get(..end).unwrap_or_default();
    let mut lines = head.split(|&b| b == b'\n').map(strip_cr);
    let status = parse_status_line(lines.next().unwrap_or_default())?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(ReplyError::TooManyHeaders);
        }
        headers.push(parse_header(line)?);
    }
    let framing = framing(&status, &headers)?;
    Ok(Some((
        Head {
            status,
            headers,
            framing,
        },
        end,
    )))
}

/// Index just past the blank line ending the head, if there is one.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf.get(i..)?.iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let next = buf.get(nl + 1..)?;
        if next.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        if next.starts_with(b"\n") {
            return Some(nl + 2);
        }
        i = nl + 1;
    }
    None
}

fn strip_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

fn framing(status: &StatusLine, headers: &[(String, String)]) -> Result<Framing, ReplyError> {
    if status.code < 200 || status.code == 204 || status.code == 304 {
        return Ok(Framing::Empty);
    }
    let chunked = headers.iter().any(|(n, v)| {
        n == "transfer-encoding"
            && v.rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    });
    if chunked {
        return Ok(Framing::Chunked);
    }
    let mut len: Option<u64> = None;
    for (_, v) in headers.iter().filter(|(n, _)| n == "content-length") {
        for part in v.split(',') {
            let p = part.trim();
            if p.is_empty() || p.len() > 19 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReplyError::BadContentLength);
            }
            let n: u64 = p.parse().map_err(|_| ReplyError::BadContentLength)?;
            if len.is_some_and(|l| l != n) {
                return Err(ReplyError::BadContentLength);
            }
            len = Some(n);
        }
    }
    Ok(match len {
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

/// Chunked decoder state (RFC 9112 §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line (bytes so far).
    Size(Vec<u8>),
    /// Inside a chunk: bytes left.
    Data(u64),
    /// After a chunk's data: expecting CRLF (bytes of it seen).
    DataEnd(u8),
    /// After the last chunk: trailer lines; the current line so far.
    Trailer(Vec<u8>),
}

/// Incremental body decoder: feed it raw bytes as they arrive, get decoded body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyDecoder {
    framing: Framing,
    /// Decoded bytes so far (checked against [`MAX_BODY`]).
    total: u64,
    chunk: Chunk,
    done: bool,
}

impl BodyDecoder {
    /// A decoder for a body with this framing; a `Length` above [`MAX_BODY`] is refused.
    pub fn new(framing: Framing) -> Result<BodyDecoder, ReplyError> {
        if let Framing::Length(n) = framing {
            if n > MAX_BODY as u64 {
                return Err(ReplyError::BodyTooLarge);
            }
        }
        Ok(BodyDecoder {
            framing,
            total: 0,
            chunk: Chunk::Size(Vec::new()),
            done: matches!(framing, Framing::Empty | Framing::Length(0)),
        })
    }

    /// The whole body has been seen (bytes after it are ignored).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Feed raw bytes; decoded body bytes are appended to `out`. Returns whether the
    /// body is complete.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<bool, ReplyError> {
        while !self.done && !input.is_empty() {
            match self.framing {
                Framing::Empty => self.done = true,
                Framing::Length(n) => {
                    let left = n.saturating_sub(self.total);
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                    let (now, _) = input.split_at(take);
                    self.emit(now, out)?;
                    input = &[];
                    self.done = self.total >= n;
                }
                Framing::Close => {
                    self.emit(input, out)?;
                    input = &[];
                }
                Framing::Chunked => input = self.feed_chunked(input, out)?,
            }
        }
        Ok(self.done)
    }

    /// The connection closed: is the body complete?
    pub fn finish(&mut self) -> Result<(), ReplyError> {
        match self.framing {
            Framing::Close => {
                self.done = true;
                Ok(())
            }
            _ if self.done => Ok(()),
            _ => Err(ReplyError::Truncated),
        }
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), ReplyError> {
        let total = self.total.saturating_add(bytes.len() as u64);
        if total > MAX_BODY as u64 {
            return Err(ReplyError::BodyTooLarge);
        }
        self.total = total;
        out.extend_from_slice(bytes);
        Ok(())
    }

    /// Consume some of `input` in the chunked state machine; returns the rest.
    fn feed_chunked<'a>(
        &mut self,
        input: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Result<&'a [u8], ReplyError> {
        let Some((&b, rest)) = input.split_first() else {
            return Ok(input);
        };
        match &mut self.chunk {
            Chunk::Size(line) => {
                if b != b'\n' {
                    if line.len() >= MAX_CHUNK_LINE {
                        return Err(ReplyError::BadChunk("chunk-size line too long"));
                    }
                    line.push(b);
                    return Ok(rest);
                }
                let size = parse_chunk_size(strip_cr(line))?;
                self.chunk = if size == 0 {
                    Chunk::Trailer(Vec::new())
                } else {
                    Chunk::Data(size)
                };
                Ok(rest)
            }
            Chunk::Data(left) => {
                let take = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(input.len());
                let (now, rest) = input.split_at(take);
                *left -= take as u64;
                if *left == 0 {
                    self.chunk = Chunk::DataEnd(0);
                }
                self.emit(now, out)?;
                Ok(rest)
            }
            Chunk::DataEnd(seen) => {
                match (b, *seen) {
                    (b'\r', 0) => *seen = 1,
                    (b'\n', _) => self.chunk = Chunk::Size(Vec::new()),
                    _ => return Err(ReplyError::BadChunk("no CRLF after chunk data")),
                }
                Ok(rest)
            }
            Chunk::Trailer(line) => {
                if b != b'\n' {
                    if line.len() >= MAX_HEAD {
                        return Err(ReplyError::BadChunk("trailer line too long"));
                    }
                    line.push(b);
                    return Ok(rest);
                }
                if strip_cr(line).is_empty() {
                    self.done = true;
                } else {
                    line.clear();
                }
                Ok(rest)
            }
        }
    }
}

/// `1a;ext=1` -> 26. At most 15 hex digits, so the size fits a u64 with room.
fn parse_chunk_size(line: &[u8]) -> Result<u64, ReplyError> {
    let hex = line
        .split(|&b| b == b';')
        .next()
        .map(trim)
        .unwrap_or_default();
    if hex.is_empty() || hex.len() > 15 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(ReplyError::BadChunk("bad chunk size"));
    }
    let mut n: u64 = 0;
    for &d in hex {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d.wrapping_sub(b'A').wrapping_add(10),
        };
        n = (n << 4) | u64::from(v & 0xf);
    }
    if n > MAX_BODY as u64 {
        return Err(ReplyError::BodyTooLarge);
    }
    Ok(n)
}

/// A complete reply parsed from one buffer (what was read until the server closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The head.
    pub head: Head,
    /// The decoded body.
    pub body: Vec<u8>,
}

/// Parse a whole reply received until end of stream.
pub fn parse_reply(buf: &[u8]) -> Result<Reply, ReplyError> {
    let (head, at) = parse_head(buf)?.ok_or(ReplyError::Truncated)?;
    let mut dec = BodyDecoder::new(head.framing)?;
    let mut body = Vec::new();
    dec.feed(buf.get(at..).unwrap_or_default(), &mut body)?;
    dec.finish()?;
    Ok(Reply { head, body })
}

/// keepalived's `status_code` list: codes and inclusive ranges (`200-299`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCodes(Vec<(u16, u16)>);

impl StatusCodes {
    /// keepalived's default when a url has neither `digest` nor `status_code`: 200-299.
    pub fn default_ok() -> StatusCodes {
        StatusCodes(vec![(200, 299)])
    }

    /// Parse config words such as `200`, `200-299`, `301,302` (each code 100..=999).
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<StatusCodes, StatusCodeError> {
        let mut v = Vec::new();
        for w in words.iter().flat_map(|w| w.as_ref().split(',')) {
            let w = w.trim();
            if w.is_empty() {
                continue;
            }
            let (lo, hi) = match w.split_once('-') {
                Some((a, b)) => (code(a)?, code(b)?),
                None => (code(w)?, code(w)?),
            };
            if lo > hi {
                return Err(StatusCodeError::Reversed(w.to_owned()));
            }
            v.push((lo, hi));
        }
        if v.is_empty() {
            return Err(StatusCodeError::Empty);
        }
        Ok(StatusCodes(v))
    }

    /// Whether `code` is accepted.
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&code))
    }
}

fn code(s: &str) -> Result<u16, StatusCodeError> {
    match s.trim().parse::<u16>() {
        Ok(c) if (100..=999).contains(&c) => Ok(c),
        _ => Err(StatusCodeError::BadCode(s.to_owned())),
    }
}

/// A `status_code` list the checker cannot use.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StatusCodeError {
    /// A range whose first code is above its last.
    #[error("status_code range '{0}' is reversed")]
    Reversed(String),
    /// No code at all.
    #[error("status_code needs at least one code")]
    Empty,
    /// Not a number in 100-999.
    #[error("bad status code '{0}' (100-999)")]
    BadCode(String),
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let s = parse_status_line(b"HTTP/1.1 200 OK").unwrap();
        assert_eq!((s.version, s.code, s.reason.as_str()), ((1, 1), 200, "OK"));
        assert_eq!(parse_status_line(b"HTTP/1.0 404").unwrap().code, 404);
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable")
                .unwrap()
                .reason,
            "Service Unavailable"
        );
        for bad in [
            &b"HTTP/1.1 2000000000 OK"[..],
            b"HTTP/1.1 20 OK",
            b"HTTP/1.1 099 x",
            b"HTTP/1.1  200 OK",
            b"HTTP/11 200 OK",
            b"ICY 200 OK",
            b"HTTP/1.1 200OK",
            b"",
            b"HTTP/1.1 200 O\x00K",
        ] {
            assert!(parse_status_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn headers() {
        assert_eq!(
            parse_header(b"Content-Length:  12 ").unwrap(),
            ("content-length".into(), "12".into())
        );
        assert_eq!(parse_header(b"X-A:").unwrap(), ("x-a".into(), "".into()));
        assert!(parse_header(b" folded").is_err());
        assert!(parse_header(b"no colon").is_err());
        assert!(parse_header(b"bad name: v").is_err());
        assert!(parse_header(b": v").is_err());
    }

    #[test]
    fn heads_and_framing() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA";
        let (h, at) = parse_head(r).unwrap().unwrap();
        assert_eq!(h.framing, Framing::Length(3));
        assert_eq!(&r[at..], b"abcEXTRA");
        assert_eq!(parse_reply(r).unwrap().body, b"abc");
        // Bare LF line endings.
        let r = b"HTTP/1.0 200 OK\nServer: x\n\nhello";
        let rep = parse_reply(r).unwrap();
        assert_eq!(
            (rep.head.framing, &rep.body[..]),
            (Framing::Close, &b"hello"[..])
        );
        assert_eq!(rep.head.header("server"), Some("x"));
        // Incomplete.
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nA: b\r\n").unwrap(), None);
        // Too large.
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse_head(&big), Err(ReplyError::HeadTooLarge));
        // Conflicting lengths.
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            Err(ReplyError::BadContentLength)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n"),
            Err(ReplyError::BadContentLength)
        );
        // 204 has no body.
        let (h, _) = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Empty);
        // Truncated body.
        assert_eq!(
            parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"),
            Err(ReplyError::Truncated)
        );
        assert_eq!(
            BodyDecoder::new(Framing::Length(MAX_BODY as u64 + 1)),
            Err(ReplyError::BodyTooLarge)
        );
    }

    #[test]
    fn chunked() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nT: v\r\n\r\nGARBAGE";
        assert_eq!(parse_reply(r).unwrap().body, b"Wikipedia");
        // Byte by byte gives the same.
        let (h, at) = parse_head(r).unwrap().unwrap();
        let mut d = BodyDecoder::new(h.framing).unwrap();
        let mut out = Vec::new();
        for b in &r[at..] {
            d.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert!(d.is_done());
        assert_eq!(out, b"Wikipedia");
        for bad in [
            &b"zz\r\n"[..],
            b"4\r\nWikiXX",
            b"fffffffffffffffff\r\n",
            b"800000\r\n",
        ] {
            let mut d = BodyDecoder::new(Framing::Chunked).unwrap();
            assert!(d.feed(bad, &mut Vec::new()).is_err(), "{bad:?}");
        }
        let mut d = BodyDecoder::new(Framing::Chunked).unwrap();
        d.feed(b"4\r\nWi", &mut Vec::new()).unwrap();
        assert_eq!(d.finish(), Err(ReplyError::Truncated));
        let mut d = BodyDecoder::new(Framing::Chunked).unwrap();
        let long = vec![b'1'; MAX_CHUNK_LINE + 1];
        assert!(d.feed(&long, &mut Vec::new()).is_err());
    }

    #[test]
    fn body_cap() {
        let mut d = BodyDecoder::new(Framing::Close).unwrap();
        let block = vec![0u8; 1024 * 1024];
        let mut out = Vec::new();
        for _ in 0..4 {
            d.feed(&block, &mut out).unwrap();
            out.clear();
        }
        assert_eq!(d.feed(b"x", &mut out), Err(ReplyError::BodyTooLarge));
    }

    #[test]
    fn status_codes() {
        let s = StatusCodes::parse(&["200-299", "301,302", "404"]).unwrap();
        assert!(s.contains(200) && s.contains(299) && s.contains(302) && s.contains(404));
        assert!(!s.contains(300) && !s.contains(500));
        assert!(StatusCodes::parse(&["299-200"]).is_err());
        assert!(StatusCodes::parse(&["2000"]).is_err());
        assert!(StatusCodes::parse::<&str>(&[]).is_err());
        assert!(StatusCodes::default_ok().contains(250));
    }
}
