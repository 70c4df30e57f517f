//! Apache httpd config syntax for one file: logical lines (backslash
//! continuation, `#` comment lines), words (`ap_getword_conf`: quotes with
//! backslash-escaped quotes), and the `<Section>` tree. Sections must close
//! in the file that opens them, as in httpd.

use std::path::Path;
use std::rc::Rc;

use super::loader::MAX_NESTING;

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
    let max_nesting = MAX_NESTING.saturating_sub(depth);
    let mut problems: Vec<(u32, String)> = Vec::new();
    let mut dropped = 0usize;
    let mut report = |problems: &mut Vec<(u32, String)>, line: u32, message: String| {
        if problems.len() < MAX_PROBLEMS_PER_FILE {
            problems.push((line, message));
        } else {
            dropped += 1;
        }
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Vec<Node> = Vec::new();
    let mut skip_depth = 0usize;
    let mut stored = 0usize;
    let mut last_line = 1;
    let mut budget_reported = false;
    let mut nesting_reported = false;

    for (line, text) in logical_lines(text) {
        last_line = line;
        if let Some(rest) = text.strip_prefix("</") {
            let name = rest.trim_end_matches('>').trim().to_string();
            if skip_depth > 0 {
                skip_depth -= 1;
                continue;
            }
            let Some(pos) = stack
                .iter()
                .rposition(|f| f.name.eq_ignore_ascii_case(&name))
            else {
                report(
                    &mut problems,
                    line,
                    format!(
                        "</{name}> without matching <{name}> section: httpd refuses the config"
                    ),
                );
                continue;
            };
            while stack.len() > pos + 1 {
                if let Some(inner) = stack.pop() {
                    report(
                        &mut problems,
                        inner.line,
                        format!(
                            "<{}> is closed by </{name}>: expected </{}> first",
                            inner.name, inner.name
                        ),
                    );
                    close(inner, file, &mut stack, &mut root);
                }
            }
            if let Some(frame) = stack.pop() {
                close(frame, file, &mut stack, &mut root);
            }
            continue;
        }
        if let Some(rest) = text.strip_prefix('<') {
            if skip_depth > 0 {
                skip_depth += 1;
                continue;
            }
            let inner = match rest.strip_suffix('>') {
                Some(inner) => inner,
                None => {
                    report(
                        &mut problems,
                        line,
                        "section directive missing closing '>': httpd refuses the config"
                            .to_string(),
                    );
                    rest
                }
            };
            let (name, args) = split_name(inner);
            if stored >= budget || stack.len() >= max_nesting {
                if stored >= budget && !budget_reported {
                    budget_reported = true;
                    report(
                        &mut problems,
                        line,
                        "too many directives; the rest of this file is ignored".to_string(),
                    );
                } else if stack.len() >= max_nesting && !nesting_reported {
                    nesting_reported = true;
                    report(
                        &mut problems,
                        line,
                        format!(
                            "sections nested deeper than {MAX_NESTING}; their contents are ignored"
                        ),
                    );
                }
                skip_depth = 1;
                continue;
            }
            stored += 1;
            stack.push(Frame {
                name,
                args,
                line,
                children: Vec::new(),
            });
            continue;
        }
        if skip_depth > 0 {
            continue;
        }
        if stored >= budget {
            if !budget_reported {
                budget_reported = true;
                report(
                    &mut problems,
                    line,
                    "too many directives; the rest of this file is ignored".to_string(),
                );
            }
            continue;
        }
        stored += 1;
        let (name, args) = split_name(&text);
        let node = Node::Directive {
            name,
            args,
            file: Rc::clone(file),
            line,
        };
        match stack.last_mut() {
            Some(frame) => frame.children.push(node),
            None => root.push(node),
        }
    }
    while let Some(frame) = stack.pop() {
        report(
            &mut problems,
            frame.line,
            format!(
                "<{}> opened here is never closed: expected </{}> but saw end of file",
                frame.name, frame.name
            ),
        );
        close(frame, file, &mut stack, &mut root);
    }
    if dropped > 0 {
        problems.push((
            last_line,
            format!("{dropped} further syntax problems in this file not listed"),
        ));
    }
    ParsedFile {
        nodes: root,
        problems,
        stored,
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
