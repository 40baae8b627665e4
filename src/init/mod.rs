//! `firedrill init`: drills written for a stack from its own alert rules
//! (one scenario per alert, by what its expression needs to fire), so a
//! team starts from a suite that covers every alert it can provoke and a
//! list of those it cannot, with why.

pub mod alertmanager;
pub mod compose;
mod configs;
mod container;
pub mod drills;
pub mod import;
pub mod interpolate;

use crate::error::{Error, Result};
use crate::spec::stack::Stack;
use std::path::{Component, Path, PathBuf};

/// What `init` wrote, and the alerts it wrote no drill for.
#[derive(Debug, Default)]
pub struct Written {
    /// The scenario files written.
    pub files: Vec<PathBuf>,
    /// Alerts with no drill, each with why.
    pub unclassified: Vec<(String, String)>,
}

/// `to` as a path relative to the folder `from` (both made absolute).
pub(crate) fn relative(to: &Path, from: &Path) -> PathBuf {
    let abs = |p: &Path| {
        std::path::absolute(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| c.as_os_str().to_os_string())
            .collect::<Vec<_>>()
    };
    let (t, f) = (abs(to), abs(from));
    let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    out
}

/// Writes a scenario per alert rule of the stack at `stack_path` into
/// `out` (created); an existing file is not overwritten.
pub fn write_drills(stack_path: &Path, out: &Path) -> Result<Written> {
    let stack = Stack::load(stack_path)?;
    std::fs::create_dir_all(out).map_err(Error::io(out))?;
    let rel = relative(stack_path, out);
    let mut w = Written::default();
    for d in drills::draft(&stack, &rel.to_string_lossy()) {
        match d {
            drills::Drafted::Scenario { file, text, .. } => {
                let path = out.join(&file);
                if path.exists() {
                    return Err(Error::Invalid(format!(
                        "{} exists: firedrill init does not overwrite a drill",
                        path.display()
                    )));
                }
                std::fs::write(&path, text).map_err(Error::io(&path))?;
                w.files.push(path);
            }
            drills::Drafted::Unclassified { alert, why } => w.unclassified.push((alert, why)),
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_path_climbs_then_descends() {
        assert_eq!(
            relative(Path::new("/a/b/stack.yaml"), Path::new("/a/c/d")),
            PathBuf::from("../../b/stack.yaml")
        );
    }
}
