//! Apache httpd config syntax for one file: logical lines (backslash
//! continuation, `#` comment lines), words (`ap_getword_conf`: quotes with
//! backslash-escaped quotes), and the `<Section>` tree. Sections must close
//! in the file that opens them, as in httpd.

use std::path::Path;
use std::rc::Rc;

use super::loader::MAX_NESTING;
use super::shown;

const MAX_PROBLEMS_PER_FILE: usize = 50;

/// A directive or a section, with the line it starts on.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    Directive {
        name: String,
        /// Raw argument text, split later (after `${VAR}` substitution,
        /// which httpd applies to the raw line).
        args: String,
        file: Rc<Path>,
        line: u32,
    },
    Section {
        name: String,
        args: String,
        file: Rc<Path>,
        line: u32,
        children: Vec<Node>,
    },
}

#[derive(Debug, Default)]
pub(crate) struct ParsedFile {
    pub nodes: Vec<Node>,
    pub problems: Vec<(u32, String)>,
    pub stored: usize,
}

/// Logical lines: (first physical line number, text without the
/// continuation backslashes), trimmed, comments and blanks dropped.
fn logical_lines(text: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(u32, String)> = None;
    for (index, raw) in text.split('\n').enumerate() {
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        // httpd joins a line whose last character is a backslash with the next.
        let (body, continues) = match raw.strip_suffix('\\') {
            Some(body) => (body, true),
            None => (raw, false),
        };
        let (start, mut acc) = pending.take().unwrap_or((number, String::new()));
        acc.push_str(body);
        if continues {
            pending = Some((start, acc));
            continue;
        }
        let trimmed = acc.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push((start, trimmed.to_string()));
        }
    }
    if let Some((start, acc)) = pending {
        let trimmed = acc.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push((start, trimmed.to_string()));
        }
    }
    out
}

/// Splits argument text into words like `ap_getword_conf`: whitespace
/// separated; `"..."` or `'...'` quote (a backslash escapes the quote
/// character inside). Returns the words and whether a quote was left open.
pub(crate) fn split_args(text: &str) -> (Vec<String>, bool) {
    let mut words = Vec::new();
    let mut unterminated = false;
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            break;
        };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&first) {
                    word.push(first);
                    chars.next();
                } else if c == first {
                    closed = true;
                    break;
                } else {
                    word.push(c);
                }
            }
            unterminated |= !closed;
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    (words, unterminated)
}

struct Frame {
    name: String,
    args: String,
    line: u32,
    children: Vec<Node>,
}

/// Parses one file into nodes. Sections nested deeper than
/// `MAX_NESTING - depth` are dropped with a problem; at most `budget` nodes
/// are stored.
pub(crate) fn parse(text: &str, file: &Rc<Path>, depth: usize, budget: usize) -> ParsedFile {
    let mut p = Parser {
        file,
        max_nesting: MAX_NESTING.saturating_sub(depth),
        budget,
        problems: Vec::new(),
        dropped: 0,
        stack: Vec::new(),
        root: Vec::new(),
        skip_depth: 0,
        stored: 0,
        budget_reported: false,
        nesting_reported: false,
    };
    let mut last_line = 1;
    for (line, text) in logical_lines(text) {
        last_line = line;
        if let Some(rest) = text.strip_prefix("</") {
            p.close_section(rest, line);
        } else if let Some(rest) = text.strip_prefix('<') {
            p.open_section(rest, line);
        } else {
            p.directive(&text, line);
        }
    }
    while let Some(frame) = p.stack.pop() {
        p.report(
            frame.line,
            format!(
                "{} opened here is never closed: expected {} but saw end of file",
                shown::apache_section(&frame.name),
                shown::apache_section_end(&frame.name)
            ),
        );
        close(frame, file, &mut p.stack, &mut p.root);
    }
    if p.dropped > 0 {
        p.problems.push((
            last_line,
            format!(
                "{} further syntax problems in this file not listed",
                p.dropped
            ),
        ));
    }
    ParsedFile {
        nodes: p.root,
        problems: p.problems,
        stored: p.stored,
    }
}

/// The state of one file's parse.
struct Parser<'a> {
    file: &'a Rc<Path>,
    max_nesting: usize,
    budget: usize,
    problems: Vec<(u32, String)>,
    /// Problems past [`MAX_PROBLEMS_PER_FILE`], counted.
    dropped: usize,
    /// The open sections, innermost last.
    stack: Vec<Frame>,
    root: Vec<Node>,
    /// Inside a section being dropped (too deep, over budget): its depth.
    skip_depth: usize,
    stored: usize,
    budget_reported: bool,
    nesting_reported: bool,
}

impl Parser<'_> {
    fn report(&mut self, line: u32, message: String) {
        if self.problems.len() < MAX_PROBLEMS_PER_FILE {
            self.problems.push((line, message));
        } else {
            self.dropped += 1;
        }
    }

    fn report_budget_once(&mut self, line: u32) {
        if !self.budget_reported {
            self.budget_reported = true;
            self.report(
                line,
                "too many directives; the rest of this file is ignored".to_string(),
            );
        }
    }

    /// `</Name>`: closes the innermost section of that name (and, with a
    /// problem each, the sections left open inside it).
    fn close_section(&mut self, rest: &str, line: u32) {
        let name = rest.trim_end_matches('>').trim().to_string();
        if self.skip_depth > 0 {
            self.skip_depth -= 1;
            return;
        }
        let Some(pos) = self
            .stack
            .iter()
            .rposition(|f| f.name.eq_ignore_ascii_case(&name))
        else {
            self.report(
                line,
                format!(
                    "{} without a matching {}: httpd refuses the config",
                    shown::apache_section_end(&name),
                    shown::apache_section(&name)
                ),
            );
            return;
        };
        while self.stack.len() > pos + 1 {
            if let Some(inner) = self.stack.pop() {
                self.report(
                    inner.line,
                    format!(
                        "{} is closed by {}: expected {} first",
                        shown::apache_section(&inner.name),
                        shown::apache_section_end(&name),
                        shown::apache_section_end(&inner.name)
                    ),
                );
                close(inner, self.file, &mut self.stack, &mut self.root);
            }
        }
        if let Some(frame) = self.stack.pop() {
            close(frame, self.file, &mut self.stack, &mut self.root);
        }
    }

    /// `<Name args>`: opens a section, unless the budget or the nesting
    /// limit drops it (and its contents).
    fn open_section(&mut self, rest: &str, line: u32) {
        if self.skip_depth > 0 {
            self.skip_depth += 1;
            return;
        }
        let inner = match rest.strip_suffix('>') {
            Some(inner) => inner,
            None => {
                self.report(
                    line,
                    "section directive missing closing '>': httpd refuses the config".to_string(),
                );
                rest
            }
        };
        let (name, args) = split_name(inner);
        if self.stored >= self.budget || self.stack.len() >= self.max_nesting {
            if self.stored >= self.budget && !self.budget_reported {
                self.report_budget_once(line);
            } else if self.stack.len() >= self.max_nesting && !self.nesting_reported {
                self.nesting_reported = true;
                self.report(
                    line,
                    format!(
                        "sections nested deeper than {MAX_NESTING}; their contents are ignored"
                    ),
                );
            }
            self.skip_depth = 1;
            return;
        }
        self.stored += 1;
        self.stack.push(Frame {
            name,
            args,
            line,
            children: Vec::new(),
        });
    }

    /// A directive line, stored in the innermost open section.
    fn directive(&mut self, text: &str, line: u32) {
        if self.skip_depth > 0 {
            return;
        }
        if self.stored >= self.budget {
            self.report_budget_once(line);
            return;
        }
        self.stored += 1;
        let (name, args) = split_name(text);
        let node = Node::Directive {
            name,
            args,
            file: Rc::clone(self.file),
            line,
        };
        match self.stack.last_mut() {
            Some(frame) => frame.children.push(node),
            None => self.root.push(node),
        }
    }
}

fn split_name(text: &str) -> (String, String) {
    let text = text.trim();
    match text.split_once(char::is_whitespace) {
        Some((name, rest)) => (name.to_string(), rest.trim().to_string()),
        None => (text.to_string(), String::new()),
    }
}

fn close(frame: Frame, file: &Rc<Path>, stack: &mut [Frame], root: &mut Vec<Node>) {
    let node = Node::Section {
        name: frame.name,
        args: frame.args,
        file: Rc::clone(file),
        line: frame.line,
        children: frame.children,
    };
    match stack.last_mut() {
        Some(parent) => parent.children.push(node),
        None => root.push(node),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> ParsedFile {
        let file: Rc<Path> = Rc::from(Path::new("/t.conf"));
        parse(text, &file, 0, usize::MAX)
    }

    #[test]
    fn words_and_quotes() {
        let (w, open) = split_args(r#"a "b c" 'd \'e' "f"#);
        assert_eq!(w, vec!["a", "b c", "d 'e", "f"]);
        assert!(open);
    }

    #[test]
    fn continuation_and_sections() {
        let p = parse_str(
            "# c\nListen \\\n  443\n<VirtualHost *:443>\n  SSLEngine on\n  <IfModule x>\n  </IfModule>\n</virtualhost>\n",
        );
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        match &p.nodes[0] {
            Node::Directive {
                name, args, line, ..
            } => {
                assert_eq!((name.as_str(), args.as_str(), *line), ("Listen", "443", 2));
            }
            other => panic!("{other:?}"),
        }
        match &p.nodes[1] {
            Node::Section {
                name,
                children,
                line,
                ..
            } => {
                assert_eq!(
                    (name.as_str(), *line, children.len()),
                    ("VirtualHost", 4, 2)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unbalanced_sections() {
        let p = parse_str(
            "<VirtualHost *:443>\n<Directory />\n</VirtualHost>\n</Files>\n<IfModule x>\n",
        );
        assert_eq!(p.problems.len(), 3, "{:?}", p.problems);
    }
}
