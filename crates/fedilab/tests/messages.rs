//! No message in the sources carries the indentation of a broken line
//! continuation. A string continued on the next line without a trailing
//! `\` keeps the newline and the next line's indentation; a continuation
//! that lost its `\` and its newline leaves a run of spaces mid-sentence
//! ("through the              inspector"). This reads every string literal
//! of `crates/*/src/**/*.rs` (outside `#[cfg(test)]` code) and reports
//! both.
//!
//! Allowed: indented lines (help text and tables start their lines with
//! spaces on purpose), two spaces between columns (`lab {}  namespace`),
//! runs before an aligned `# comment`, and raw strings (verbatim by
//! intent).

use std::path::{Path, PathBuf};

/// Broken messages outside this branch's files, matched by file and a piece
/// of the message. An entry that no longer matches fails the test: delete
/// it then.
const KNOWN: &[(&str, &str)] = &[];

/// A suspicious string literal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Finding {
    /// 1-based line of the literal's opening quote.
    line: usize,
    /// Why.
    what: &'static str,
    /// The literal's text, escapes decoded.
    text: String,
}

/// One string literal: where it starts, its source text between the
/// quotes, and whether it is raw.
struct Literal<'a> {
    line: usize,
    source: &'a str,
    raw: bool,
}

/// The string literals of Rust source `text`, skipping comments, char
/// literals and lifetimes.
fn literals(text: &str) -> Vec<Literal<'_>> {
    let bytes = text.as_bytes();
    let line_of = |i: usize| text[..i].bytes().filter(|b| *b == b'\n').count() + 1;
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += block_comment_len(rest);
        } else if let Some((hashes, open)) = raw_string_start(rest)
            && (i == 0 || !ident(bytes[i - 1]))
        {
            let body = i + open;
            let close = format!("\"{}", "#".repeat(hashes));
            let len = text[body..].find(&close).unwrap_or(text.len() - body);
            out.push(Literal {
                line: line_of(i),
                source: &text[body..body + len],
                raw: true,
            });
            i = body + len + close.len();
        } else if bytes[i] == b'\'' {
            i += char_literal_len(rest);
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            let end = j.min(bytes.len());
            out.push(Literal {
                line: line_of(i),
                source: &text[i + 1..end],
                raw: false,
            });
            i = end + 1;
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    out
}

/// `/* ... */`, nested, as Rust has them.
fn block_comment_len(rest: &str) -> usize {
    let mut depth = 0;
    let mut i = 0;
    while i < rest.len() {
        if rest[i..].starts_with("/*") {
            depth += 1;
            i += 2;
        } else if rest[i..].starts_with("*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += rest[i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    rest.len()
}

/// `r"`, `r#"`, `br"`, `cr"`: the number of `#` and where the text starts.
fn raw_string_start(rest: &str) -> Option<(usize, usize)> {
    let after_prefix = rest
        .strip_prefix("br")
        .or_else(|| rest.strip_prefix("cr"))
        .or_else(|| rest.strip_prefix('r'))?;
    let hashes = after_prefix.bytes().take_while(|b| *b == b'#').count();
    after_prefix[hashes..]
        .starts_with('"')
        .then(|| (hashes, rest.len() - after_prefix.len() + hashes + 1))
}

/// The length of a char literal (`'"'`, `'\''`, `'\u{1F600}'`) at the
/// start of `rest`, or 1 for the quote of a lifetime or label.
fn char_literal_len(rest: &str) -> usize {
    let mut chars = rest.char_indices().skip(1);
    match chars.next() {
        // The escaped character, then the closing quote.
        Some((_, '\\')) => rest
            .get(3..)
            .and_then(|r| r.find('\''))
            .map_or(1, |end| end + 4),
        Some((_, c)) => {
            let close = 1 + c.len_utf8();
            if rest[close..].starts_with('\'') {
                close + 1
            } else {
                1
            }
        }
        None => 1,
    }
}

/// The text a non-raw literal stands for: escapes decoded, `\` + newline
/// + the next line's leading whitespace removed, as the compiler does.
fn decode(source: &str) -> String {
    let mut out = String::new();
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\n') => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
            }
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// The suspicious literals of Rust source `text`, up to its first
/// `#[cfg(test)]`.
fn findings(text: &str) -> Vec<Finding> {
    let code = text.find("\n#[cfg(test)]").map_or(text, |end| &text[..end]);
    let mut out = Vec::new();
    for literal in literals(code) {
        if literal.raw {
            continue;
        }
        let text = decode(literal.source);
        let mut finding = |what| {
            out.push(Finding {
                line: literal.line,
                what,
                text: text.clone(),
            });
        };
        if unescaped_newline_then_spaces(literal.source) {
            finding("a line break without `\\` keeps the next line's indentation");
        } else if text.split('\n').any(has_a_gap) {
            finding("a run of spaces mid-sentence (a continuation that lost its `\\`?)");
        }
    }
    out
}

/// A newline in the source of a literal, not escaped by `\`, followed by
/// two or more spaces.
fn unescaped_newline_then_spaces(source: &str) -> bool {
    let bytes = source.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\n' => {
                if source[i + 1..].starts_with("  ") {
                    return true;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    false
}

/// In a line that does not start with a space: three or more spaces
/// between two words, not before an aligned `#` comment.
fn has_a_gap(line: &str) -> bool {
    if line.starts_with(' ') {
        return false;
    }
    let trimmed = line.trim_end();
    let mut rest = trimmed;
    while let Some(start) = rest.find("   ") {
        let after = rest[start..].trim_start();
        if !after.starts_with('#') && !rest[..start].is_empty() {
            return true;
        }
        rest = after;
    }
    false
}

fn sources() -> Vec<PathBuf> {
    let root = crate::common::repo_root();
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .filter_map(Result::ok)
        .map(|e| e.path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("source dir")
            .filter_map(Result::ok)
        {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn relative(path: &Path) -> String {
    let root = crate::common::repo_root();
    let root = root.canonicalize().unwrap_or(root);
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    path.strip_prefix(&root)
        .unwrap_or(&path)
        .display()
        .to_string()
}

#[test]
fn no_cli_message_contains_the_indentation_of_a_broken_continuation() {
    let files = sources();
    assert!(files.len() > 50, "found only {} source files", files.len());
    let mut unexpected = Vec::new();
    let mut known_seen = vec![false; KNOWN.len()];
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read a source file");
        let file = relative(path);
        for f in findings(&text) {
            let known = KNOWN
                .iter()
                .position(|(k_file, piece)| *k_file == file && f.text.contains(piece));
            match known {
                Some(k) => known_seen[k] = true,
                None => unexpected.push(format!("{file}:{}: {}: {:?}", f.line, f.what, f.text)),
            }
        }
    }
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    let stale: Vec<_> = KNOWN
        .iter()
        .zip(known_seen)
        .filter(|(_, seen)| !seen)
        .map(|(k, _)| k)
        .collect();
    assert!(stale.is_empty(), "fixed: remove from KNOWN: {stale:?}");
}

#[test]
fn the_scanner_finds_both_shapes_and_spares_the_rest() {
    let source = r#####"
fn f() {
    // "a comment   with   gaps"
    let c = '"';
    let l: &'static str = "fine";
    let a = "broken continuation
             keeps this indentation";
    let b = "lost continuation,               then text";
    let ok = "continued \
              properly";
    let table = "lab {}  namespace {}";
    let help = "Examples:\n  fedilab dns zone          # aligned comment";
    let raw = r#"yaml:
  indented: on purpose"#;
    let esc = "a \" quote\\";
}
#[cfg(test)]
mod tests {
    const T: &str = "ignored
        here";
}
"#####;
    let found: Vec<(usize, String)> = findings(source)
        .into_iter()
        .map(|f| (f.line, f.text))
        .collect();
    assert_eq!(
        found,
        [
            (
                6,
                "broken continuation\n             keeps this indentation".to_owned()
            ),
            (8, "lost continuation,               then text".to_owned()),
        ]
    );
    assert_eq!(
        decode(
            r"continued \
              properly"
        ),
        "continued properly"
    );
}
