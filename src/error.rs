//! Errors that point at the user's input: file, line and column, with the
//! offending line and a caret (via miette), so bad input is refused before
//! any container starts.

use miette::{Diagnostic, NamedSource, SourceSpan};
use std::path::Path;

/// A position in a YAML (or other text) file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// An input error with its location. `Display` starts with `file:line:col:`
/// so that plain logs and editors can jump to it; the miette rendering adds
/// the source line and a caret.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{file}:{line}:{col}: {message}")]
pub struct SpecError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("here")]
    span: SourceSpan,
    #[help]
    pub help: Option<String>,
}

impl SpecError {
    pub fn new(path: &Path, text: &str, pos: Pos, message: impl Into<String>) -> Self {
        let file = path.display().to_string();
        let offset = byte_offset(text, pos);
        SpecError {
            src: NamedSource::new(file.clone(), text.to_string()),
            file,
            line: pos.line,
            col: pos.col,
            message: message.into(),
            span: (offset, 1.min(text.len().saturating_sub(offset))).into(),
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// From a serde_yaml_ng error, which carries its own location.
    pub fn from_yaml(path: &Path, text: &str, err: &serde_yaml_ng::Error) -> Self {
        let pos = err
            .location()
            .map(|l| Pos {
                line: l.line(),
                col: l.column(),
            })
            .unwrap_or(Pos { line: 1, col: 1 });
        // serde_yaml_ng appends " at line X column Y"; we print it in front.
        let msg = err.to_string();
        let msg = match msg.find(" at line ") {
            Some(i) => msg[..i].to_string(),
            None => msg,
        };
        SpecError::new(path, text, pos, msg)
    }
}

fn byte_offset(text: &str, pos: Pos) -> usize {
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i + 1 == pos.line {
            let col_bytes: usize = line
                .chars()
                .take(pos.col.saturating_sub(1))
                .map(char::len_utf8)
                .sum();
            return offset + col_bytes;
        }
        offset += line.len();
    }
    offset.min(text.len())
}

/// Several input errors found in one pass: all are reported, not just the first.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{} problem(s) in the input", errors.len())]
pub struct SpecErrors {
    #[related]
    pub errors: Vec<SpecError>,
}

impl SpecErrors {
    pub fn into_result(self) -> Result<(), SpecErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}
