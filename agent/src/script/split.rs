//! keepalived's splitting of a script command line into words.
//!
//! The config lexer already removed the outer quotes of `script "..."` or
//! `notify_master "..."`; keepalived then splits that string again
//! (`set_script_params_array` -> `alloc_strvec_quoted_escaped`): words are separated by
//! unquoted white space, `"` and `'` quote (and are removed; quoted text glues to the
//! text around it), and a backslash escapes inside and outside quotes (`\n`, `\t`,
//! `\xHH`, `\NNN` octal, `\cC` control, any other `\C` is `C`). No shell expansion.

use thiserror::Error;

/// Why a command line cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SplitError {
    /// A quote is never closed.
    #[error("missing terminating {0} in '{1}'")]
    UnmatchedQuote(char, String),
    /// The line ends with a lone backslash.
    #[error("missing escaped character at end of '{0}'")]
    TrailingBackslash(String),
    /// Nothing but white space.
    #[error("empty command")]
    Empty,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c')
}

/// Apply one escape; `chars` is positioned after the backslash.
fn escape(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    src: &str,
) -> Result<char, SplitError> {
    let c = chars
        .next()
        .ok_or_else(|| SplitError::TrailingBackslash(src.to_owned()))?;
    Ok(match c {
        'x' if chars.peek().is_some_and(char::is_ascii_hexdigit) => {
            // keepalived keeps shifting into one byte: only the last two digits count.
            let mut v: u8 = 0;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(16)) {
                v = v.wrapping_shl(4) | d as u8;
                chars.next();
            }
            char::from(v)
        }
        'c' if chars.peek().is_some() => {
            let n = chars.next().map_or(0, |n| n as u32 & 0x1f);
            char::from_u32(n).unwrap_or('\0')
        }
        '0'..='7' => {
            let mut v = c as u32 - '0' as u32;
            for _ in 0..2 {
                match chars.peek() {
                    Some(d @ '0'..='7') => {
                        v = (v << 3) + (*d as u32 - '0' as u32);
                        chars.next();
                    }
                    _ => break,
                }
            }
            char::from((v & 0xff) as u8)
        }
        'a' => '\x07',
        'b' => '\x08',
        'E' => '\x1b',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        other => other,
    })
}

/// Split a command line into argv words as keepalived does.
pub fn split_args(src: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut chars = src.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| is_space(*c)) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (_, '\\') => {
                    chars.next();
                    word.push(escape(&mut chars, src)?);
                }
                (Some(q), c) if c == q => {
                    chars.next();
                    quote = None;
                }
                (Some(_), c) => {
                    chars.next();
                    word.push(c);
                }
                (None, '"' | '\'') => {
                    chars.next();
                    quote = Some(c);
                }
                (None, c) if is_space(c) => break,
                (None, c) => {
                    chars.next();
                    word.push(c);
                }
            }
        }
        if let Some(q) = quote {
            return Err(SplitError::UnmatchedQuote(q, src.to_owned()));
        }
        words.push(word);
    }
    if words.is_empty() {
        return Err(SplitError::Empty);
    }
    Ok(words)
}

/// The command line as keepalived shows it and hands to `/bin/sh -c`: every word in
/// single quotes, except a first word starting with `<` or `>` (a redirection-only test).
pub fn shell_quote(argv: &[String]) -> String {
    let mut out = String::new();
    for (i, w) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if i == 0 && (w.starts_with('<') || w.starts_with('>')) {
            out.push_str(w);
        } else {
            out.push('\'');
            out.push_str(&w.replace('\'', r"'\''"));
            out.push('\'');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn table() {
        let cases: &[(&str, &[&str])] = &[
            ("/bin/true", &["/bin/true"]),
            ("  /bin/x   a\tb  ", &["/bin/x", "a", "b"]),
            ("/bin/x 'a b' c", &["/bin/x", "a b", "c"]),
            ("/bin/x \"a b\" c", &["/bin/x", "a b", "c"]),
            ("abcd\" efg h jkl \"mnop", &["abcd efg h jkl mnop"]),
            ("abcd \"efg h jkl\" mnop", &["abcd", "efg h jkl", "mnop"]),
            ("/bin/x '' y", &["/bin/x", "", "y"]),
            ("/bin/x a\\ b", &["/bin/x", "a b"]),
            ("/bin/x \\\"q\\\"", &["/bin/x", "\"q\""]),
            ("/bin/x \"it's\"", &["/bin/x", "it's"]),
            ("/bin/x 'say \"hi\"'", &["/bin/x", "say \"hi\""]),
            ("/bin/x a\\tb", &["/bin/x", "a\tb"]),
            ("/bin/x \\x41\\101\\cA", &["/bin/x", "AA\u{1}"]),
            ("/bin/x 'a\\'b'", &["/bin/x", "a'b"]),
            ("/bin/x $HOME `id` ;ls", &["/bin/x", "$HOME", "`id`", ";ls"]),
        ];
        for (input, want) in cases {
            assert_eq!(split_args(input).as_deref(), Ok(&s(want)[..]), "{input}");
        }
    }

    #[test]
    fn errors() {
        assert!(matches!(
            split_args("/bin/x 'a"),
            Err(SplitError::UnmatchedQuote('\'', _))
        ));
        assert!(matches!(
            split_args("/bin/x \"a"),
            Err(SplitError::UnmatchedQuote('"', _))
        ));
        assert!(matches!(
            split_args("/bin/x a\\"),
            Err(SplitError::TrailingBackslash(_))
        ));
        assert_eq!(split_args("  \t "), Err(SplitError::Empty));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(
            shell_quote(&s(&["/bin/x", "a b", "it's"])),
            r"'/bin/x' 'a b' 'it'\''s'"
        );
        assert_eq!(shell_quote(&s(&["</dev/tcp/x/80"])), "</dev/tcp/x/80");
    }
}
