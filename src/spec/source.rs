//! A YAML file with its text and the position of every node, so that a
//! semantic error found after deserialising (an unknown alert, service or
//! metric) can still name the line and column it came from.

use crate::error::{Pos, SpecError};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A loaded YAML document: path, text, and node positions keyed by a dotted
/// path (`steps.3.expect_alert.name`).
#[derive(Debug, Clone)]
pub struct Source {
    /// The file's path as given.
    pub path: PathBuf,
    /// The file's full text.
    pub text: String,
    positions: HashMap<String, Pos>,
}

impl Source {
    /// Reads the YAML file at `path` and indexes its node positions.
    pub fn read(path: &Path) -> Result<Source, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SpecError::new(
                path,
                "",
                Pos { line: 1, col: 1 },
                format!("cannot read: {e}"),
            )
        })?;
        Ok(Source::from_text(path, text))
    }

    /// Wraps text already read from `path` and indexes its node positions.
    pub fn from_text(path: &Path, text: String) -> Source {
        let positions = index_positions(&text);
        Source {
            path: path.to_path_buf(),
            text,
            positions,
        }
    }

    /// Deserialises the whole document, reporting serde errors with position.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, SpecError> {
        serde_yaml_ng::from_str(&self.text)
            .map_err(|e| SpecError::from_yaml(&self.path, &self.text, &e))
    }

    /// Position of the node at `path`, or of its nearest ancestor that exists.
    pub fn pos(&self, path: &str) -> Pos {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.positions.get(&p) {
                return *pos;
            }
            match p.rfind('.') {
                Some(i) => p.truncate(i),
                None => {
                    return self
                        .positions
                        .get("")
                        .copied()
                        .unwrap_or(Pos { line: 1, col: 1 })
                }
            }
        }
    }

    /// An error located at the node `path`.
    pub fn error(&self, path: &str, message: impl std::fmt::Display) -> SpecError {
        SpecError::new(&self.path, &self.text, self.pos(path), message.to_string())
    }

    /// Resolves a path written in this file relative to the file's folder.
    pub fn relative(&self, p: &str) -> PathBuf {
        let base = self.path.parent().unwrap_or(Path::new("."));
        base.join(p)
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

struct Indexer {
    stack: Vec<Frame>,
    positions: HashMap<String, Pos>,
}

impl Indexer {
    /// The path of the node that starts now, advancing the parent's cursor.
    fn child_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, index }) => {
                let p = join(path, &index.to_string());
                *index += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
        }
    }

    /// In a map awaiting a key, a scalar is that key: returns true if consumed.
    fn take_key(&mut self, value: &str, pos: Pos) -> bool {
        if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
            if key.is_none() {
                let p = join(path, value);
                self.positions.entry(p).or_insert(pos);
                *key = Some(value.to_string());
                return true;
            }
        }
        false
    }
}

fn join(base: &str, seg: &str) -> String {
    if base.is_empty() {
        seg.to_string()
    } else {
        format!("{base}.{seg}")
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos {
            line: mark.line(),
            col: mark.col() + 1,
        };
        match ev {
            Event::Scalar(value, ..) => {
                if self.take_key(&value, pos) {
                    return;
                }
                if let Some(p) = self.child_path() {
                    // Value position wins over the key position for scalars.
                    self.positions.insert(p, pos);
                }
            }
            Event::MappingStart(..) => {
                let p = self.child_path().unwrap_or_default();
                self.positions.entry(p.clone()).or_insert(pos);
                self.stack.push(Frame::Map { path: p, key: None });
            }
            Event::SequenceStart(..) => {
                let p = self.child_path().unwrap_or_default();
                self.positions.entry(p.clone()).or_insert(pos);
                self.stack.push(Frame::Seq { path: p, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                let _ = self.child_path();
            }
            _ => {}
        }
    }
}

fn index_positions(text: &str) -> HashMap<String, Pos> {
    let mut idx = Indexer {
        stack: Vec::new(),
        positions: HashMap::new(),
    };
    let mut parser = Parser::new_from_str(text);
    // A syntax error stops indexing; serde reports it with its own position.
    let _ = parser.load(&mut idx, false);
    idx.positions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_nested_nodes() {
        let text =
            "name: x\nsteps:\n  - load: {target: backend}\n  - expect_alert:\n      name: Foo\n";
        let s = Source::from_text(Path::new("s.yaml"), text.into());
        assert_eq!(s.pos("name"), Pos { line: 1, col: 7 });
        assert_eq!(s.pos("steps.0.load.target"), Pos { line: 3, col: 20 });
        assert_eq!(s.pos("steps.1.expect_alert.name"), Pos { line: 5, col: 13 });
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(s.pos("steps.1.expect_alert.nope"), Pos { line: 4, col: 5 });
    }
}
