//! nginx config syntax: a tokenizer following `ngx_conf_read_token` and a
//! block-tree builder, for one file (includes are spliced in later, by
//! `nginx.rs`, because nginx parses each included file on its own: a block
//! may not open in one file and close in another).
//!
//! Token rules (nginx 1.22 `src/core/ngx_conf_file.c`):
//! - words are separated by space, tab, CR, LF; `;` ends a directive, `{`
//!   opens a block, `}` closes one; inside a bare word `;` and `{` end the
//!   word but `}` and `#` do not, and `${` does not open a block;
//! - `#` starts a comment only where a word could start;
//! - `"..."` and `'...'` quote a word; after the closing quote nginx wants
//!   a space, `;`, `{` or `)`;
//! - a backslash makes the next character literal; then `\"`, `\'`, `\\`
//!   lose the backslash and `\t`, `\r`, `\n` become control characters.

use std::iter::Peekable;
use std::path::Path;
use std::rc::Rc;
use std::str::Chars;

use super::loader::MAX_NESTING;
use super::shown;

/// Problems recorded per file before the rest are only counted, so that a
/// file of garbage does not yield millions of entries.
const MAX_PROBLEMS_PER_FILE: usize = 50;

/// One directive, with its block if it has one.
#[derive(Clone, Debug)]
pub(crate) struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub file: Rc<Path>,
    pub line: u32,
    pub block: Option<Vec<Directive>>,
}

/// The result of parsing one file.
#[derive(Debug, Default)]
pub(crate) struct ParsedFile {
    pub directives: Vec<Directive>,
    /// (line, message)
    pub problems: Vec<(u32, String)>,
    /// Directives stored (against the caller's budget).
    pub stored: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
}

struct Lexer<'a> {
    chars: Peekable<Chars<'a>>,
    line: u32,
    problems: Problems,
}

/// Capped problem list.
#[derive(Default)]
struct Problems {
    list: Vec<(u32, String)>,
    dropped: usize,
}

impl Problems {
    fn push(&mut self, line: u32, message: String) {
        if self.list.len() < MAX_PROBLEMS_PER_FILE {
            self.list.push((line, message));
        } else {
            self.dropped += 1;
        }
    }

    fn finish(mut self, last_line: u32) -> Vec<(u32, String)> {
        if self.dropped > 0 {
            self.list.push((
                last_line,
                format!(
                    "{} further syntax problems in this file not listed",
                    self.dropped
                ),
            ));
        }
        self.list
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            chars: text.chars().peekable(),
            line: 1,
            problems: Problems::default(),
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line = self.line.saturating_add(1);
        }
        Some(c)
    }

    fn next_token(&mut self) -> Option<(Tok, u32)> {
        loop {
            let c = *self.chars.peek()?;
            let line = self.line;
            match c {
                c if is_space(c) => {
                    self.bump();
                }
                '#' => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                ';' => {
                    self.bump();
                    return Some((Tok::Semi, line));
                }
                '{' => {
                    self.bump();
                    return Some((Tok::Open, line));
                }
                '}' => {
                    self.bump();
                    return Some((Tok::Close, line));
                }
                '"' | '\'' => return Some(self.quoted(c)),
                _ => return Some(self.bare()),
            }
        }
    }

    fn quoted(&mut self, quote: char) -> (Tok, u32) {
        let line = self.line;
        self.bump();
        let mut raw = String::new();
        loop {
            match self.bump() {
                None => {
                    self.problems.push(
                        line,
                        format!(
                            "unterminated {quote}-quoted string starting here: unexpected end of file"
                        ),
                    );
                    break;
                }
                Some('\\') => {
                    raw.push('\\');
                    if let Some(next) = self.bump() {
                        raw.push(next);
                    }
                }
                Some(c) if c == quote => {
                    if let Some(&next) = self.chars.peek()
                        && !(is_space(next) || matches!(next, ';' | '{' | ')'))
                    {
                        self.problems.push(
                            self.line,
                            "unexpected character right after a quoted string".to_string(),
                        );
                    }
                    break;
                }
                Some(c) => raw.push(c),
            }
        }
        (Tok::Word(unescape(&raw)), line)
    }

    fn bare(&mut self) -> (Tok, u32) {
        let line = self.line;
        let mut raw = String::new();
        let mut after_dollar = false;
        while let Some(&c) = self.chars.peek() {
            if c == '{' && after_dollar {
                // `${var}`: part of the word, not a block.
                raw.push(c);
                self.bump();
                continue;
            }
            if is_space(c) || c == ';' || c == '{' {
                break;
            }
            self.bump();
            after_dollar = c == '$';
            raw.push(c);
            if c == '\\'
                && let Some(next) = self.bump()
            {
                raw.push(next);
            }
        }
        (Tok::Word(unescape(&raw)), line)
    }
}

/// nginx's post-processing of a word's backslashes.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(q @ ('"' | '\'' | '\\')) => out.push(q),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

struct Frame {
    name: String,
    args: Vec<String>,
    line: u32,
    children: Vec<Directive>,
}

/// Parses one file into a directive tree. Leaf directives for which `keep`
/// is false are dropped (the evaluator never looks at them; this bounds
/// memory on huge files). At most `budget` directives are stored. Blocks
/// nested deeper than `MAX_NESTING - depth` are skipped with a problem.
pub(crate) fn parse(
    text: &str,
    file: &Rc<Path>,
    depth: usize,
    budget: usize,
    keep: fn(&str) -> bool,
) -> ParsedFile {
    let mut lexer = Lexer::new(text);
    let mut tree = Tree {
        file,
        max_nesting: MAX_NESTING.saturating_sub(depth),
        budget,
        keep,
        stack: Vec::new(),
        root: Vec::new(),
        words: Vec::new(),
        skip_depth: 0,
        nesting_reported: false,
        stored: 0,
        budget_reported: false,
    };
    while let Some((tok, line)) = lexer.next_token() {
        if tree.skip_depth > 0 {
            match tok {
                Tok::Open => tree.skip_depth += 1,
                Tok::Close => tree.skip_depth -= 1,
                Tok::Word(_) | Tok::Semi => {}
            }
            continue;
        }
        match tok {
            Tok::Word(w) => tree.words.push((w, line)),
            Tok::Semi => tree.end_directive(&mut lexer.problems, line),
            Tok::Open => tree.open_block(&mut lexer.problems, line),
            Tok::Close => tree.close_block(&mut lexer.problems, line),
        }
    }
    let last_line = lexer.line;
    if let Some((name, line)) = tree.words.first() {
        lexer.problems.push(
            *line,
            format!(
                "unexpected end of file: {} is not terminated by \";\"",
                shown::nginx_directive(name)
            ),
        );
    }
    // Unclosed blocks: nginx refuses the file. Keep their contents anyway,
    // so the servers in them still show up as evidence.
    while let Some(frame) = tree.stack.pop() {
        lexer.problems.push(
            frame.line,
            format!(
                "{} opened here is never closed: unexpected end of file, expecting \"}}\"",
                shown::nginx_block(&frame.name)
            ),
        );
        close_frame(frame, file, &mut tree.stack, &mut tree.root);
    }
    ParsedFile {
        directives: tree.root,
        problems: lexer.problems.finish(last_line),
        stored: tree.stored,
    }
}

/// The directive tree of one file as its tokens arrive.
struct Tree<'a> {
    file: &'a Rc<Path>,
    max_nesting: usize,
    budget: usize,
    keep: fn(&str) -> bool,
    /// The open blocks, innermost last.
    stack: Vec<Frame>,
    root: Vec<Directive>,
    /// The words of the directive being read.
    words: Vec<(String, u32)>,
    /// Inside a block being dropped (too deep, over budget): its depth.
    skip_depth: usize,
    nesting_reported: bool,
    stored: usize,
    budget_reported: bool,
}

impl Tree<'_> {
    fn report_budget_once(&mut self, problems: &mut Problems, line: u32) {
        if !self.budget_reported {
            self.budget_reported = true;
            problems.push(
                line,
                "too many directives; the rest of this file is ignored".to_string(),
            );
        }
    }

    /// `;`: the words read so far are a leaf directive.
    fn end_directive(&mut self, problems: &mut Problems, line: u32) {
        let Some(((name, first_line), args)) = split_words(&mut self.words) else {
            problems.push(line, "unexpected \";\"".to_string());
            return;
        };
        if !(self.keep)(&name) {
            return;
        }
        if self.stored >= self.budget {
            self.report_budget_once(problems, line);
            return;
        }
        self.stored += 1;
        let directive = Directive {
            name,
            args,
            file: Rc::clone(self.file),
            line: first_line,
            block: None,
        };
        match self.stack.last_mut() {
            Some(frame) => frame.children.push(directive),
            None => self.root.push(directive),
        }
    }

    /// `{`: the words read so far open a block, unless the budget or the
    /// nesting limit drops it (and its contents).
    fn open_block(&mut self, problems: &mut Problems, line: u32) {
        let ((name, first_line), args) = split_words(&mut self.words).unwrap_or_else(|| {
            problems.push(line, "unexpected \"{\"".to_string());
            ((String::new(), line), Vec::new())
        });
        if self.stored >= self.budget {
            self.report_budget_once(problems, line);
            self.skip_depth = 1;
            return;
        }
        if self.stack.len() >= self.max_nesting {
            if !self.nesting_reported {
                self.nesting_reported = true;
                problems.push(
                    first_line,
                    format!("blocks nested deeper than {MAX_NESTING}; their contents are ignored"),
                );
            }
            self.skip_depth = 1;
            return;
        }
        self.stack.push(Frame {
            name,
            args,
            line: first_line,
            children: Vec::new(),
        });
    }

    /// `}`: closes the innermost block.
    fn close_block(&mut self, problems: &mut Problems, line: u32) {
        if let Some((name, _)) = self.words.first() {
            problems.push(
                line,
                format!(
                    "unexpected \"}}\": {} is not terminated by \";\"",
                    shown::nginx_directive(name)
                ),
            );
            self.words.clear();
        }
        match self.stack.pop() {
            Some(frame) => {
                self.stored += 1;
                close_frame(frame, self.file, &mut self.stack, &mut self.root);
            }
            None => problems.push(line, "unexpected \"}\" with no open block".to_string()),
        }
    }
}

fn split_words(words: &mut Vec<(String, u32)>) -> Option<((String, u32), Vec<String>)> {
    if words.is_empty() {
        return None;
    }
    let mut iter = std::mem::take(words).into_iter();
    let first = iter.next()?;
    Some((first, iter.map(|(w, _)| w).collect()))
}

fn close_frame(frame: Frame, file: &Rc<Path>, stack: &mut [Frame], root: &mut Vec<Directive>) {
    let directive = Directive {
        name: frame.name,
        args: frame.args,
        file: Rc::clone(file),
        line: frame.line,
        block: Some(frame.children),
    };
    match stack.last_mut() {
        Some(parent) => parent.children.push(directive),
        None => root.push(directive),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: &str) -> bool {
        true
    }

    fn parse_str(text: &str) -> ParsedFile {
        let file: Rc<Path> = Rc::from(Path::new("/t.conf"));
        parse(text, &file, 0, usize::MAX, all)
    }

    #[test]
    fn quotes_escapes_comments() {
        let p = parse_str(
            "a \"x y\" 'z;w' b\\;c d#e; # comment ;\nlog_format m '$a \\\"q\\\"';\nset $x ${y}z;",
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let d = &p.directives;
        assert_eq!(d[0].name, "a");
        // nginx keeps the backslash of escapes it does not know (`\;`).
        assert_eq!(d[0].args, vec!["x y", "z;w", "b\\;c", "d#e"]);
        assert_eq!(d[1].args, vec!["m", "$a \"q\""]);
        assert_eq!(d[1].line, 2);
        assert_eq!(d[2].args, vec!["$x", "${y}z"]);
    }

    #[test]
    fn blocks_and_lines() {
        let p = parse_str("http {\n  server {\n    listen 443 ssl;\n  }\n}\n");
        assert!(p.problems.is_empty());
        let http = &p.directives[0];
        let server = &http.block.as_ref().unwrap()[0];
        assert_eq!(server.line, 2);
        let listen = &server.block.as_ref().unwrap()[0];
        assert_eq!((listen.name.as_str(), listen.line), ("listen", 3));
    }

    #[test]
    fn unterminated_things_are_problems() {
        let p = parse_str("http {\n server {\n listen 80;\n");
        assert_eq!(p.problems.len(), 2, "{:?}", p.problems);
        assert_eq!(p.problems[0].0, 2);
        assert_eq!(p.directives[0].name, "http");
        let p = parse_str("a \"open\n\n");
        assert!(p.problems[0].1.contains("unterminated"));
        // Stray `}`, stray `;`, and `listen 80 }` (unterminated + stray).
        let p = parse_str("}\n;\nlisten 80 }");
        assert_eq!(p.problems.len(), 4, "{:?}", p.problems);
        let p = parse_str("a \"b\"c;");
        assert!(p.problems[0].1.contains("after a quoted string"));
    }
}
