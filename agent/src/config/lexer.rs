//! keepalived.conf lexer: lines to tokens with a file:line on each.
//!
//! Handles comments (`#` and `!` to the end of the line, outside quotes), quoted strings
//! (`"` or `'`, shell-like escapes, glued to adjacent unquoted text), `{` and `}` as tokens
//! even without surrounding spaces, `include` (and keepalived's `includer`, `includem`,
//! `includew`, `includeb`, `includea` variants) with globs resolved against the directory of
//! the including file, and `@id` / `@^id` conditional lines. Parameter definitions
//! (`$NAME=value`) and `~SEQ` / `~LST` lines are reported as unsupported, never ignored.
//!
//! Every size is bounded (line length, include depth, file count, total bytes), and no
//! input makes it panic: the config fuzz target calls it through `parse_str`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Diagnostic;

/// Most nested includes followed (keepalived has no hard limit; loops are caught anyway).
const MAX_INCLUDE_DEPTH: usize = 16;
/// Most files read in one load, main file included.
const MAX_FILES: usize = 1024;
/// Largest single file read.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Largest total of all files read.
const MAX_TOTAL_BYTES: u64 = 32 * 1024 * 1024;
/// Longest line kept; longer ones are an error (keepalived's own buffer is 1 KiB-ish).
const MAX_LINE_CHARS: usize = 64 * 1024;

/// Where a token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// The file (shared between all tokens of it).
    pub file: Arc<Path>,
    /// 1-based line.
    pub line: u32,
}

impl Loc {
    /// A diagnostic at this place.
    pub fn diag(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.to_path_buf(),
            line: self.line,
            message: message.into(),
        }
    }
}

/// A lexical token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A word, quotes removed and escapes applied.
    Word(String),
    /// `{`
    Open,
    /// `}`
    Close,
    /// End of a logical line (statements end here).
    Eol,
}

/// Lexer options.
#[derive(Debug, Clone, Default)]
pub struct LexOptions {
    /// keepalived's config-id for `@id` lines (keepalived defaults it to the host name's
    /// first label); `None` keeps no `@id` line and every `@^id` line.
    pub config_id: Option<String>,
    /// Follow `include` lines (off for pure in-memory parsing).
    pub follow_includes: bool,
}

/// Output of lexing: tokens, errors and notes.
#[derive(Debug, Default)]
pub struct Lexed {
    /// Tokens with their place.
    pub toks: Vec<(Tok, Loc)>,
    /// Errors (the config is rejected if any).
    pub errors: Vec<Diagnostic>,
    /// Notes for `--check`.
    pub notes: Vec<Diagnostic>,
}

struct State {
    opts: LexOptions,
    out: Lexed,
    /// Canonical paths of the files being read, outermost first (include loop detection).
    stack: Vec<PathBuf>,
    files: usize,
    bytes: u64,
}

/// Lex `text` as the contents of `name`; includes are resolved against `name`'s directory.
pub fn lex(name: &Path, text: &str, opts: LexOptions) -> Lexed {
    let mut st = State {
        opts,
        out: Lexed::default(),
        stack: Vec::new(),
        files: 1,
        bytes: text.len() as u64,
    };
    if let Ok(canon) = name.canonicalize() {
        st.stack.push(canon);
    }
    lex_text(&mut st, name, text);
    st.out
}

fn lex_text(st: &mut State, name: &Path, text: &str) {
    let file: Arc<Path> = Arc::from(name);
    let base_dir = match name.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::new(),
    };
    let mut line_no: u32 = 0;
    for raw in text.split('\n') {
        line_no = line_no.saturating_add(1);
        let loc = Loc {
            file: file.clone(),
            line: line_no,
        };
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.chars().count() > MAX_LINE_CHARS {
            st.out
                .errors
                .push(loc.diag(format!("line longer than {MAX_LINE_CHARS} characters")));
            continue;
        }
        let stripped = strip_comment(raw);
        if let Some(col) = stripped.find('\0') {
            // keepalived's C strings end at a NUL: the rest of the value would be lost.
            st.out.errors.push(loc.diag(format!(
                "NUL byte at column {}: not allowed in a config file",
                stripped[..col].chars().count().saturating_add(1)
            )));
            continue;
        }
        let mut line = stripped.trim();
        if line.is_empty() {
            continue;
        }
        // Conditional configuration: `@id rest` or `@^id rest`.
        if let Some(cond) = line.strip_prefix('@') {
            let (negate, cond) = match cond.strip_prefix('^') {
                Some(c) => (true, c),
                None => (false, cond),
            };
            let end = cond.find(char::is_whitespace).unwrap_or(cond.len());
            let (id, rest) = cond.split_at(end);
            let matches = st.opts.config_id.as_deref() == Some(id);
            if matches == negate {
                continue;
            }
            line = rest.trim();
            if line.is_empty() {
                continue;
            }
        }
        if line.starts_with('$') {
            st.out.errors.push(loc.diag(
                "parameter definitions ($NAME=value) are not supported by ha-agent; expand them",
            ));
            continue;
        }
        if line.starts_with("~SEQ") || line.starts_with("~LST") {
            st.out
                .errors
                .push(loc.diag("~SEQ/~LST blocks are not supported by ha-agent; expand them"));
            continue;
        }
        if let Some((kw, rest)) = include_rest(line) {
            include(st, &base_dir, kw, rest, &loc);
            continue;
        }
        let before = st.out.toks.len();
        if let Err(msg) = tokenize(line, &loc, &mut st.out.toks) {
            // Drop the whole line, so no follow-on errors come from half of it.
            st.out.toks.truncate(before);
            st.out.errors.push(loc.diag(msg));
        }
        if st.out.toks.len() > before {
            st.out.toks.push((Tok::Eol, loc));
        }
    }
}

/// The include keyword and the part after it, if the line is an include.
fn include_rest(line: &str) -> Option<(&str, &str)> {
    let end = line.find(char::is_whitespace)?;
    let (kw, rest) = line.split_at(end);
    matches!(
        kw,
        "include" | "includer" | "includem" | "includew" | "includeb" | "includea"
    )
    .then(|| (kw, rest.trim()))
}

fn include(st: &mut State, base_dir: &Path, kw: &str, rest: &str, loc: &Loc) {
    if !st.opts.follow_includes {
        st.out
            .errors
            .push(loc.diag("include is not followed when parsing from memory"));
        return;
    }
    let mut words = Vec::new();
    if let Err(msg) = tokenize(rest, loc, &mut words) {
        st.out.errors.push(loc.diag(msg));
        return;
    }
    let pattern = match words.as_slice() {
        [(Tok::Word(w), _)] => w.clone(),
        _ => {
            st.out
                .errors
                .push(loc.diag("include needs exactly one file name or pattern"));
            return;
        }
    };
    if pattern.contains(['{', '}']) {
        st.out
            .errors
            .push(loc.diag("brace expressions in include patterns are not supported by ha-agent"));
        return;
    }
    let full = if Path::new(&pattern).is_absolute() {
        PathBuf::from(&pattern)
    } else {
        base_dir.join(&pattern)
    };
    let is_glob = pattern.contains(['*', '?', '[']);
    let full_str = full.to_string_lossy().into_owned();
    let paths: Vec<PathBuf> = if is_glob {
        match glob::glob(&full_str) {
            Ok(it) => {
                let mut v: Vec<PathBuf> = it.filter_map(Result::ok).collect();
                v.sort();
                v
            }
            Err(e) => {
                st.out
                    .errors
                    .push(loc.diag(format!("bad include pattern '{pattern}': {e}")));
                return;
            }
        }
    } else {
        vec![full]
    };
    if paths.is_empty() {
        st.out
            .notes
            .push(loc.diag(format!("include pattern '{pattern}' matches no file")));
        return;
    }
    // keepalived skips a non-regular file with a warning, except under `includer`
    // (read errors are errors) and `includea` (every check is).
    let strict = matches!(kw, "includer" | "includea");
    for path in paths {
        include_file(st, &path, strict, loc);
    }
}

fn include_file(st: &mut State, path: &Path, strict: bool, loc: &Loc) {
    let shown = path.display();
    // Stat before anything opens it: a FIFO would block the open.
    match std::fs::metadata(path) {
        Err(e) => {
            st.out
                .errors
                .push(loc.diag(format!("cannot read include file '{shown}': {e}")));
            return;
        }
        Ok(meta) => {
            if let Some(kind) = irregular(&meta) {
                if strict {
                    st.out.errors.push(loc.diag(format!(
                        "include file '{shown}' is not a regular file ({kind}); not read"
                    )));
                } else {
                    st.out.notes.push(loc.diag(format!(
                        "warning: include file '{shown}' is not a regular file ({kind}) - skipping, as keepalived does (`includer` makes it an error)"
                    )));
                }
                return;
            }
        }
    }
    if st.stack.len() >= MAX_INCLUDE_DEPTH {
        st.out.errors.push(loc.diag(format!(
            "include of '{shown}' nested deeper than {MAX_INCLUDE_DEPTH} levels"
        )));
        return;
    }
    if st.files >= MAX_FILES {
        st.out
            .errors
            .push(loc.diag(format!("more than {MAX_FILES} files included")));
        return;
    }
    let canon = match path.canonicalize() {
        Ok(c) => c,
        Err(e) => {
            st.out
                .errors
                .push(loc.diag(format!("cannot read include file '{shown}': {e}")));
            return;
        }
    };
    if st.stack.contains(&canon) {
        st.out
            .errors
            .push(loc.diag(format!("include loop: '{shown}' includes itself")));
        return;
    }
    let text = match read_bounded(&canon, MAX_TOTAL_BYTES.saturating_sub(st.bytes)) {
        Ok(t) => t,
        Err(msg) => {
            st.out
                .errors
                .push(loc.diag(format!("cannot read include file '{shown}': {msg}")));
            return;
        }
    };
    st.files = st.files.saturating_add(1);
    st.bytes = st.bytes.saturating_add(text.len() as u64);
    st.stack.push(canon);
    lex_text(st, path, &text);
    st.stack.pop();
}

/// Read a regular file, refusing anything larger than the limits.
///
/// The file is stat'ed before it is opened: a FIFO, a device or a directory is refused
/// without being opened (opening a FIFO for reading blocks until a writer comes). It is
/// then opened non-blocking and checked again, so a file swapped for a FIFO in between
/// cannot hang the read either.
pub fn read_bounded(path: &Path, budget: u64) -> Result<String, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    not_regular(&meta)?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    not_regular(&f.metadata().map_err(|e| e.to_string())?)?;
    let limit = MAX_FILE_BYTES.min(budget);
    let mut buf = Vec::new();
    f.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    String::from_utf8(buf).map_err(|_| "not valid UTF-8".to_string())
}

/// What kind of file `meta` is when it is not a regular file; `None` for a regular one.
fn irregular(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a file"
    })
}

/// `Err` naming the kind of file when `meta` is not a regular file.
fn not_regular(meta: &std::fs::Metadata) -> Result<(), String> {
    match irregular(meta) {
        None => Ok(()),
        Some(kind) => Err(format!("not a regular file ({kind}); not read")),
    }
}

/// Cut a line at the first `#` or `!` outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match quote {
            Some(q) => {
                if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '#' | '!' => return &line[..i],
                _ => {}
            },
        }
    }
    line
}

/// Split a comment-free line into words and braces.
fn tokenize(line: &str, loc: &Loc, out: &mut Vec<(Tok, Loc)>) -> Result<(), String> {
    let mut chars = line.chars().peekable();
    let mut word = String::new();
    let mut in_word = false;
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push((Tok::Word(std::mem::take(&mut word)), loc.clone()));
                    in_word = false;
                }
            }
            '{' | '}' => {
                if in_word {
                    out.push((Tok::Word(std::mem::take(&mut word)), loc.clone()));
                    in_word = false;
                }
                let t = if c == '{' { Tok::Open } else { Tok::Close };
                out.push((t, loc.clone()));
            }
            '"' | '\'' => {
                in_word = true;
                let mut closed = false;
                while let Some(q) = chars.next() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    if q == '\\' {
                        unescape(&mut chars, &mut word);
                    } else {
                        word.push(q);
                    }
                }
                if !closed {
                    return Err(format!("unterminated quoted string (missing {c})"));
                }
            }
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        out.push((Tok::Word(word), loc.clone()));
    }
    Ok(())
}

/// Apply one escape sequence inside a quoted string (the backslash is consumed).
fn unescape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, word: &mut String) {
    let Some(e) = chars.next() else {
        word.push('\\');
        return;
    };
    let simple = match e {
        'a' => Some('\u{7}'),
        'b' => Some('\u{8}'),
        'E' | 'e' => Some('\u{1b}'),
        'f' => Some('\u{c}'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\u{b}'),
        _ => None,
    };
    if let Some(s) = simple {
        word.push(s);
        return;
    }
    match e {
        '0'..='7' => {
            let mut v: u32 = e.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match chars.peek().and_then(|c| c.to_digit(8)) {
                    Some(d) => {
                        v = v * 8 + d;
                        chars.next();
                    }
                    None => break,
                }
            }
            word.push(char::from_u32(v & 0xff).unwrap_or('?'));
        }
        'x' => {
            let mut v: u32 = 0;
            let mut n = 0;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(16)) {
                v = (v << 4 | d) & 0xff;
                n += 1;
                chars.next();
            }
            if n == 0 {
                word.push('x');
            } else {
                word.push(char::from_u32(v).unwrap_or('?'));
            }
        }
        'c' => {
            if let Some(c) = chars.next() {
                let v = u32::from(c) & 0x1f;
                word.push(char::from_u32(v).unwrap_or('?'));
            }
        }
        other => word.push(other),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<Tok> {
        let l = lex(Path::new("t.conf"), text, LexOptions::default());
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        l.toks.into_iter().map(|(t, _)| t).collect()
    }

    fn w(s: &str) -> Tok {
        Tok::Word(s.into())
    }

    #[test]
    fn a_fifo_is_refused_without_being_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        // mkfifo(1): the crate stays free of unsafe code.
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        // Opening it for reading would block this test forever.
        assert_eq!(
            read_bounded(&fifo, u64::MAX),
            Err("not a regular file (a FIFO); not read".to_string())
        );
        assert_eq!(
            read_bounded(dir.path(), u64::MAX),
            Err("not a regular file (a directory); not read".to_string())
        );
        let opts = LexOptions {
            config_id: None,
            follow_includes: true,
        };
        let main = dir.path().join("k.conf");
        let l = lex(
            &main,
            &format!("include {}\n", fifo.display()),
            opts.clone(),
        );
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        assert_eq!(l.notes.len(), 1, "{:?}", l.notes);
        assert!(
            l.notes[0].message.contains("(a FIFO) - skipping"),
            "{:?}",
            l.notes
        );
        let l = lex(&main, &format!("includer {}\n", fifo.display()), opts);
        assert_eq!(l.errors.len(), 1, "{:?}", l.errors);
        assert_eq!(l.errors[0].line, 1);
    }

    #[test]
    fn a_nul_byte_is_an_error_at_its_column() {
        let l = lex(
            Path::new("t.conf"),
            "a\nrouter_id t\0x\n",
            LexOptions::default(),
        );
        assert_eq!(
            l.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec!["t.conf:2: NUL byte at column 12: not allowed in a config file"]
        );
        // In a comment it is cut off with the comment.
        let l = lex(Path::new("t.conf"), "a # \0\n", LexOptions::default());
        assert!(l.errors.is_empty(), "{:?}", l.errors);
    }

    #[test]
    fn comments_quotes_and_braces() {
        let t = words("a b # c\n! whole line\nx{y}z ! tail\n\"p q\"r 's#t' \"u\\tv\"\n");
        assert_eq!(
            t,
            vec![
                w("a"),
                w("b"),
                Tok::Eol,
                w("x"),
                Tok::Open,
                w("y"),
                Tok::Close,
                w("z"),
                Tok::Eol,
                w("p qr"),
                w("s#t"),
                w("u\tv"),
                Tok::Eol,
            ]
        );
    }

    #[test]
    fn lines_are_tracked() {
        let l = lex(Path::new("t.conf"), "\n\na\n\nb\r\n", LexOptions::default());
        let lines: Vec<u32> = l.toks.iter().map(|(_, l)| l.line).collect();
        assert_eq!(lines, vec![3, 3, 5, 5]);
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let l = lex(Path::new("t.conf"), "a \"b\n", LexOptions::default());
        assert_eq!(l.errors.len(), 1);
        assert_eq!(l.errors[0].line, 1);
    }

    #[test]
    fn conditional_lines() {
        let opts = LexOptions {
            config_id: Some("lb1".into()),
            follow_includes: false,
        };
        let l = lex(Path::new("t"), "@lb1 a\n@lb2 b\n@^lb1 c\n@^lb2 d\n", opts);
        let t: Vec<Tok> = l.toks.into_iter().map(|(t, _)| t).collect();
        assert_eq!(t, vec![w("a"), Tok::Eol, w("d"), Tok::Eol]);
    }

    #[test]
    fn escapes_never_panic() {
        for s in [
            "\"\\",
            "\"\\x\"",
            "\"\\777\"",
            "\"\\c\"",
            "'\\xfffffffff'",
            "\"\\c",
        ] {
            let _ = lex(Path::new("t"), s, LexOptions::default());
        }
    }

    #[test]
    fn include_glob_relative_to_including_file_and_loops() {
        let dir = std::env::temp_dir().join(format!("ha-lex-{}", std::process::id()));
        let sub = dir.join("conf.d");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("b.conf"), "bee\ninclude ../loop.conf\n").unwrap();
        std::fs::write(sub.join("a.conf"), "ay\n").unwrap();
        std::fs::write(dir.join("loop.conf"), "include conf.d/b.conf\n").unwrap();
        let main = dir.join("main.conf");
        let opts = LexOptions {
            config_id: None,
            follow_includes: true,
        };
        let l = lex(&main, "include conf.d/*.conf\n", opts);
        let t: Vec<Tok> = l.toks.iter().map(|(t, _)| t.clone()).collect();
        // a.conf before b.conf; b includes loop.conf which includes b again: a loop error.
        assert_eq!(t[0], w("ay"));
        assert_eq!(t[2], w("bee"));
        assert_eq!(l.errors.len(), 1, "{:?}", l.errors);
        assert!(l.errors[0].message.contains("include loop"));
        assert!(l.errors[0].file.ends_with("loop.conf"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
