//! Generic block tree: tokens to statements and nested blocks, each with its file:line.
//!
//! A statement is the words of one line up to a `{`, `}` or the end of the line. A statement
//! followed by `{` (on the same line or the next one, as keepalived allows) owns a block.
//! Nothing here knows keywords; see `keywords.rs` for that. The nesting depth is bounded
//! and the parser is iterative, so hostile input cannot exhaust the stack.

use super::lexer::{Loc, Tok};
use super::Diagnostic;

/// Deepest block nesting accepted (keepalived's deepest real nesting is about 5).
const MAX_DEPTH: usize = 32;

/// One statement of the config, with its block if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The first word (the keyword, or the value in a value block).
    pub name: String,
    /// The remaining words.
    pub args: Vec<String>,
    /// Where the statement starts.
    pub loc: Loc,
    /// `Some` if the statement is followed by a `{ ... }` block.
    pub block: Option<Vec<Node>>,
}

impl Node {
    /// The first argument, if any.
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(String::as_str)
    }
    /// The children (empty for a plain statement).
    pub fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }
    /// A diagnostic at this statement.
    pub fn diag(&self, message: impl Into<String>) -> Diagnostic {
        self.loc.diag(message)
    }
}

struct Frame {
    nodes: Vec<Node>,
    /// Index in the parent frame of the node that owns this block.
    owner: Option<usize>,
    /// Set when the last statement ended on an end of line (so a `{` on the next line
    /// still opens a block for it).
    last_can_open: bool,
}

/// Build the statement tree. Errors are collected; the tree is as complete as possible.
pub fn parse(toks: Vec<(Tok, Loc)>, errors: &mut Vec<Diagnostic>) -> Vec<Node> {
    let mut stack: Vec<Frame> = vec![Frame {
        nodes: Vec::new(),
        owner: None,
        last_can_open: false,
    }];
    let mut words: Vec<String> = Vec::new();
    let mut words_loc: Option<Loc> = None;
    let mut last_loc: Option<Loc> = None;

    let flush = |stack: &mut Vec<Frame>, words: &mut Vec<String>, wloc: &mut Option<Loc>| {
        if let (Some(loc), false) = (wloc.take(), words.is_empty()) {
            let mut it = std::mem::take(words).into_iter();
            let name = it.next().unwrap_or_default();
            if let Some(top) = stack.last_mut() {
                top.nodes.push(Node {
                    name,
                    args: it.collect(),
                    loc,
                    block: None,
                });
                top.last_can_open = true;
            }
        }
        words.clear();
    };

    for (tok, loc) in toks {
        last_loc = Some(loc.clone());
        match tok {
            Tok::Word(w) => {
                if words.is_empty() {
                    words_loc = Some(loc);
                }
                words.push(w);
            }
            Tok::Eol => flush(&mut stack, &mut words, &mut words_loc),
            Tok::Open => {
                flush(&mut stack, &mut words, &mut words_loc);
                let Some(top) = stack.last_mut() else { break };
                let owner = top.nodes.len().checked_sub(1);
                let ok = top.last_can_open
                    && owner.is_some_and(|i| top.nodes.get(i).is_some_and(|n| n.block.is_none()));
                top.last_can_open = false;
                if !ok {
                    errors.push(loc.diag("unexpected '{' without a keyword before it"));
                }
                if stack.len() == MAX_DEPTH {
                    errors.push(loc.diag(format!("blocks nested deeper than {MAX_DEPTH}")));
                    // Parse on as if it were a block, so braces stay balanced.
                }
                stack.push(Frame {
                    nodes: Vec::new(),
                    owner: if ok { owner } else { None },
                    last_can_open: false,
                });
            }
            Tok::Close => {
                flush(&mut stack, &mut words, &mut words_loc);
                if stack.len() <= 1 {
                    errors.push(loc.diag("unexpected '}' without a block to close"));
                    continue;
                }
                close(&mut stack);
            }
        }
    }
    flush(&mut stack, &mut words, &mut words_loc);
    // Report only the outermost unclosed block: inner ones follow from it.
    let mut unclosed: Option<Diagnostic> = None;
    while stack.len() > 1 {
        let opened = stack
            .get(stack.len() - 2)
            .zip(stack.last().and_then(|f| f.owner))
            .and_then(|(parent, i)| parent.nodes.get(i))
            .map(|n| n.diag(format!("block '{}' is not closed (missing '}}')", n.name)));
        if let Some(d) = opened.or_else(|| {
            last_loc
                .as_ref()
                .map(|l| l.diag("missing '}' at end of file"))
        }) {
            unclosed = Some(d);
        }
        close(&mut stack);
    }
    errors.extend(unclosed);
    stack.pop().map(|f| f.nodes).unwrap_or_default()
}

fn close(stack: &mut Vec<Frame>) {
    let Some(done) = stack.pop() else { return };
    let Some(parent) = stack.last_mut() else {
        return;
    };
    if let Some(node) = done.owner.and_then(|i| parent.nodes.get_mut(i)) {
        node.block = Some(done.nodes);
    }
    parent.last_can_open = false;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::lexer::{lex, LexOptions};
    use super::*;
    use std::path::Path;

    fn tree(text: &str) -> (Vec<Node>, Vec<Diagnostic>) {
        let l = lex(Path::new("t.conf"), text, LexOptions::default());
        let mut errs = l.errors;
        let t = parse(l.toks, &mut errs);
        (t, errs)
    }

    #[test]
    fn blocks_nest_and_brace_may_be_on_next_line() {
        let (t, e) = tree("a 1 {\n b 2\n c\n {\n d\n }\n}\ne{f}\n");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].name, "a");
        assert_eq!(t[0].args, vec!["1"]);
        let kids = t[0].children();
        assert_eq!(kids.len(), 2);
        assert_eq!(kids[1].name, "c");
        assert_eq!(kids[1].children()[0].name, "d");
        assert_eq!(kids[1].children()[0].loc.line, 5);
        assert_eq!(t[1].children()[0].name, "f");
        assert_eq!(t[1].loc.line, 8);
    }

    #[test]
    fn statements_end_at_braces() {
        let (t, e) = tree("url { path / \n status_code 200 }\n");
        assert!(e.is_empty(), "{e:?}");
        let k = t[0].children();
        assert_eq!(k[0].name, "path");
        assert_eq!(k[1].name, "status_code");
        assert_eq!(k[1].args, vec!["200"]);
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        let (_, e) = tree("a {\n b\n");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 1);
        assert!(e[0].message.contains("not closed"));
        let (_, e) = tree("}\n");
        assert_eq!(e[0].line, 1);
        let (_, e) = tree("a\nb\n{\n}\n{\n}\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].line, 5);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let text = "a {".repeat(100_000);
        let (_, e) = tree(&text);
        assert!(!e.is_empty());
    }
}
