//! firedrill's one error type, [`Error`], by what went wrong and so what
//! the user can do about it, with the exit code the command line gives it;
//! and the errors that point at the user's input ([`SpecError`]: file, line
//! and column, with the offending line and a caret via miette), so bad input
//! is refused before any container starts.

use miette::{Diagnostic, NamedSource, SourceSpan};
use std::path::{Path, PathBuf};

/// `Result` with firedrill's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop firedrill from giving a verdict. A drill that
/// ran and found the stack wanting is not an error: it is a FAILED (or
/// INCONCLUSIVE) [`crate::DrillReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Input refused with its locations: file:line:column and a caret.
    #[error("{}", render_spec_errors(.0))]
    Spec(#[from] SpecErrors),
    /// Input refused that has no location in a file: a command-line value,
    /// a value out of bounds, a stack that fails its static checks.
    #[error("{0}")]
    Invalid(String),
    /// A file could not be read or written.
    #[error("{}{source}", io_prefix(path))]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The Docker engine is unreachable, too old, or refused an operation.
    #[error("{0}")]
    Docker(String),
    /// An image could not be made present (pulled or built offline).
    #[error("{0}")]
    Image(String),
    /// A stack could not come up, be reset, or be torn down.
    #[error("{0}")]
    Stack(String),
    /// A component of the stack (Prometheus, Alertmanager, the Teams mock,
    /// a fixture) could not be asked, or answered what it should not.
    #[error("{0}")]
    Component(String),
    /// The load engine could not start or run a load.
    #[error("{0}")]
    Load(String),
    /// A signal (Ctrl-C or SIGTERM) stopped the run; nothing is left behind.
    #[error("interrupted (Ctrl-C or SIGTERM)")]
    Interrupted,
}

impl Error {
    /// The command line's exit status for this error: 2, as for any run
    /// that could not give a verdict (README, "Exit code"), and 130 for an
    /// interrupted one (128 + SIGINT, as shells report it).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted => 130,
            _ => 2,
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// `Error::$kind(format!(...))`.
macro_rules! err {
    ($kind:ident, $fmt:literal $($arg:tt)*) => {
        $crate::error::Error::$kind(format!($fmt $($arg)*))
    };
    ($kind:ident, $e:expr) => {
        $crate::error::Error::$kind($e.to_string())
    };
}

/// `return Err(err!(...))`.
macro_rules! bail {
    ($kind:ident, $($arg:tt)+) => {
        return Err($crate::error::err!($kind, $($arg)+))
    };
}
pub(crate) use {bail, err};

impl From<SpecError> for Error {
    fn from(e: SpecError) -> Self {
        Error::Spec(SpecErrors { errors: vec![e] })
    }
}

/// An I/O error with no file to name (a socket, an in-memory archive).
impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Self {
        Error::Io {
            path: PathBuf::new(),
            source,
        }
    }
}

fn io_prefix(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}: ", path.display())
    }
}

/// A message about the input, from a validator.
impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::Invalid(message.to_string())
    }
}

impl From<serde_yaml_ng::Error> for Error {
    fn from(e: serde_yaml_ng::Error) -> Self {
        Error::Invalid(format!("YAML: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Invalid(format!("JSON: {e}"))
    }
}

/// Adds what was being done to a foreign error, as an [`Error`] of one kind.
pub(crate) trait Context<T> {
    /// `kind` of error saying `what` failed, and why.
    fn context(self, kind: fn(String) -> Error, what: impl std::fmt::Display) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, kind: fn(String) -> Error, what: impl std::fmt::Display) -> Result<T> {
        self.map_err(|e| kind(format!("{what}: {e}")))
    }
}

/// Input errors rendered as miette draws them: the line, a caret, the help.
pub fn render_spec_errors(e: &SpecErrors) -> String {
    let mut out = String::new();
    for err in &e.errors {
        let mut s = String::new();
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
        if handler.render_report(&mut s, err).is_err() {
            s = err.to_string();
        }
        out.push_str(&s);
    }
    out.trim_end().to_string()
}

/// A position in a YAML (or other text) file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub col: usize,
}

/// An input error with its location. `Display` starts with `file:line:col:`
/// so that plain logs and editors can jump to it; the miette rendering adds
/// the source line and a caret.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{file}:{line}:{col}: {message}")]
pub struct SpecError {
    /// The file's path, as displayed.
    pub file: String,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub col: usize,
    /// What is wrong.
    pub message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("here")]
    span: SourceSpan,
    /// How to fix it, when known.
    #[help]
    pub help: Option<String>,
}

impl SpecError {
    /// An error at `pos` of the file at `path` whose text is `text`.
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

    /// Adds a hint on how to fix it.
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
    /// The errors, in the order found.
    #[related]
    pub errors: Vec<SpecError>,
}

impl SpecErrors {
    /// `Ok` when there is no error, else all of them.
    pub fn into_result(self) -> Result<(), SpecErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}
