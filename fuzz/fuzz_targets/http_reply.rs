//! Fuzzes the health checkers' reply parsers: the HTTP status line, header lines, the
//! head, body framing and chunked decoding (keepalived's CVE-2018-19115 was an overflow
//! on a long status line), plus the DNS_CHECK reply header. Any input must give a value
//! or an error, never a panic or unbounded memory. The incremental decoder must agree
//! with the one-shot parser whatever the split of the input.
#![no_main]

use ha_agent::lb::check::dns::check_reply;
use ha_agent::lb::check::reply::{
    parse_head, parse_header, parse_reply, parse_status_line, BodyDecoder, MAX_BODY, MAX_HEAD,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let _ = parse_status_line(rest);
    let _ = parse_header(rest);
    let _ = check_reply(u16::from(split), rest);

    let whole = parse_reply(rest);
    if let Ok(r) = &whole {
        assert!(r.body.len() <= MAX_BODY);
        assert!((100..=999).contains(&r.head.status.code));
    }

    // The same reply fed in pieces of `split + 1` bytes.
    let step = usize::from(split) + 1;
    let mut buf = Vec::new();
    let mut pieces = rest.chunks(step);
    let head = loop {
        match parse_head(&buf) {
            Ok(Some(h)) => break Ok(h),
            Err(e) => break Err(e),
            Ok(None) => match pieces.next() {
                Some(p) => buf.extend_from_slice(p),
                None => break Err(ha_agent::lb::check::reply::ReplyError::Truncated),
            },
        }
    };
    assert!(buf.len() < MAX_HEAD + step);
    let pieced = head.and_then(|(head, at)| {
        let mut dec = BodyDecoder::new(head.framing)?;
        let mut body = Vec::new();
        dec.feed(&buf[at..], &mut body)?;
        for p in pieces {
            if dec.is_done() {
                break;
            }
            dec.feed(p, &mut body)?;
        }
        dec.finish()?;
        Ok((head, body))
    });
    match (&whole, &pieced) {
        (Ok(w), Ok((h, b))) => assert!(w.head == *h && w.body == *b),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("one-shot {whole:?} and incremental {pieced:?} disagree"),
    }
});
