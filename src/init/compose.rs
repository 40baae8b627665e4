//! A Compose file read as Compose reads it: the project's `.env`, then the
//! environment, interpolated into every value (not keys), then each
//! service parsed by docker-compose-types. Errors name the file, line and
//! column. Also what the import asks of a service: its bind mounts (a
//! container path back to the user's file), its secrets' targets, its
//! command line and environment.

use super::interpolate::{interpolate, Vars};
use crate::error::{Result, SpecError, SpecErrors};
use crate::spec::source::Source;
use docker_compose_types as dc;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A Compose project.
#[derive(Debug)]
pub struct Project {
    /// The Compose file.
    pub path: PathBuf,
    /// The project folder (the file's): relative paths start here.
    pub dir: PathBuf,
    /// The project's name: Compose's `name`, else its folder's.
    pub name: String,
    /// The services by name, in the file's order.
    pub services: Vec<(String, dc::Service)>,
    /// Variables that were unset and went blank.
    pub blank: Vec<String>,
}

/// A bind mount: the user's path and where the container sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// On the machine, resolved against the project folder.
    pub host: PathBuf,
    /// In the container.
    pub container: String,
}

/// `.env`'s variables: `KEY=VALUE` lines, `export ` allowed, `#` comments,
/// quotes stripped.
fn dot_env(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        // A quoted value ends at its closing quote (a comment may follow).
        let quoted = v
            .chars()
            .next()
            .filter(|q| matches!(q, '"' | '\''))
            .and_then(|q| v[1..].find(q).map(|end| &v[1..1 + end]));
        let v = quoted.unwrap_or_else(|| v.split(" #").next().unwrap_or(v).trim_end());
        out.insert(k.trim().to_string(), v.to_string());
    }
    out
}

/// Interpolates every string of `v`; `at` is its dotted path, for errors.
fn walk(
    v: &mut Value,
    at: &str,
    vars: &dyn Vars,
    blank: &mut Vec<String>,
    src: &Source,
) -> Vec<SpecError> {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_string()
        } else {
            format!("{at}.{k}")
        }
    };
    match v {
        Value::String(s) => match interpolate(s, vars, blank) {
            Ok(t) => {
                *s = t;
                vec![]
            }
            Err(f) => vec![src.error(at, format!("{}: {}", f.expr, f.why))],
        },
        Value::Sequence(items) => items
            .iter_mut()
            .enumerate()
            .flat_map(|(i, x)| walk(x, &join(&i.to_string()), vars, blank, src))
            .collect(),
        Value::Mapping(m) => m
            .iter_mut()
            .flat_map(|(k, x)| {
                let key = k.as_str().unwrap_or_default().to_string();
                walk(x, &join(&key), vars, blank, src)
            })
            .collect(),
        Value::Tagged(t) => walk(&mut t.value, at, vars, blank, src),
        _ => vec![],
    }
}

/// A service that does not parse, located at its first key that does not
/// (serde's message names no path).
fn service_error(src: &Source, name: &str, v: &Value, e: &serde_yaml_ng::Error) -> SpecError {
    let at = format!("services.{name}");
    let key = v.as_mapping().and_then(|m| {
        m.iter().find_map(|(k, x)| {
            let mut one = serde_yaml_ng::Mapping::new();
            one.insert(k.clone(), x.clone());
            let e = serde_yaml_ng::from_value::<dc::Service>(Value::Mapping(one)).err()?;
            Some((k.as_str()?.to_string(), e))
        })
    });
    match key {
        Some((k, e)) => src.error(
            &format!("{at}.{k}"),
            format!("service `{name}`, `{k}`: {e}"),
        ),
        None => src.error(&at, format!("service `{name}`: {e}")),
    }
}

impl Project {
    /// Reads `path` with the process environment over its `.env`.
    pub fn load(path: &Path) -> Result<Project> {
        Self::load_with(path, &|k: &str| std::env::var(k).ok())
    }

    /// Reads `path` with `env` over its `.env`.
    pub fn load_with(path: &Path, env: &dyn Vars) -> Result<Project> {
        let src = Source::read(path)?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let dotenv = match std::fs::read_to_string(dir.join(".env")) {
            Ok(t) => dot_env(&t),
            Err(_) => BTreeMap::new(),
        };
        let vars = |k: &str| env.get(k).or_else(|| dotenv.get(k).cloned());
        let mut doc: Value = src.parse()?;
        // `<<: *defaults`, as Compose reads it.
        doc.apply_merge()
            .map_err(|e| SpecError::from_yaml(&src.path, &src.text, &e))?;
        let mut blank = Vec::new();
        let errors = walk(&mut doc, "", &vars, &mut blank, &src);
        SpecErrors { errors }.into_result()?;
        blank.sort();
        blank.dedup();
        let mut errors = Vec::new();
        let mut services = Vec::new();
        let Some(Value::Mapping(svcs)) = doc.get("services") else {
            return Err(src
                .error("services", "a Compose file needs `services`")
                .into());
        };
        for (k, v) in svcs {
            let name = k.as_str().unwrap_or_default().to_string();
            match serde_yaml_ng::from_value::<dc::Service>(v.clone()) {
                Ok(s) => services.push((name, s)),
                Err(e) => errors.push(service_error(&src, &name, v, &e)),
            }
        }
        SpecErrors { errors }.into_result()?;
        let folder = dir
            .canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
        let name = doc
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(folder)
            .unwrap_or_else(|| "compose".into());
        Ok(Project {
            path: path.to_path_buf(),
            name,
            dir,
            services,
            blank,
        })
    }

    /// The bind mounts of `svc` (named volumes and tmpfs left out).
    pub fn binds(&self, svc: &dc::Service) -> Vec<Bind> {
        let path = |h: &str| -> PathBuf {
            let p = match h.strip_prefix("~/") {
                Some(rest) => std::env::var_os("HOME")
                    .map_or(PathBuf::from(h), |home| PathBuf::from(home).join(rest)),
                None => self.dir.join(h),
            };
            // `a/../../b` as the file system resolves it.
            p.canonicalize().unwrap_or(p)
        };
        // Compose's short syntax: a source that is not a path is a volume's name.
        let host = |h: &str| -> Option<PathBuf> {
            (h.starts_with('.') || h.starts_with('/') || h.starts_with("~/")).then(|| path(h))
        };
        svc.volumes
            .iter()
            .filter_map(|v| match v {
                dc::Volumes::Simple(s) => {
                    let mut parts = s.splitn(3, ':');
                    let (h, c) = (parts.next()?, parts.next()?);
                    Some(Bind {
                        host: host(h)?,
                        container: c.to_string(),
                    })
                }
                dc::Volumes::Advanced(a) if a._type == "bind" => Some(Bind {
                    host: path(a.source.as_deref()?),
                    container: a.target.clone(),
                }),
                dc::Volumes::Advanced(_) => None,
            })
            .collect()
    }

    /// The user's file or folder the container sees at `path`: the
    /// deepest bind that holds it.
    pub fn host_path(&self, svc: &dc::Service, path: &str) -> Option<PathBuf> {
        let path = path.trim_end_matches('/');
        self.binds(svc)
            .into_iter()
            .filter_map(|b| {
                let c = b.container.trim_end_matches('/');
                let after = path.strip_prefix(c)?;
                if !(after.is_empty() || after.starts_with('/')) {
                    return None; // `/etc/prom` does not hold `/etc/prometheus`
                }
                let rest = after.trim_start_matches('/');
                let host = if rest.is_empty() {
                    b.host.clone()
                } else {
                    b.host.join(rest)
                };
                Some((c.len(), host))
            })
            .max_by_key(|(n, _)| *n)
            .map(|(_, p)| p)
    }

    /// The secrets `svc` mounts: (secret name, path in the container).
    pub fn secret_targets(&self, svc: &dc::Service) -> Vec<(String, String)> {
        let default = |n: &str| format!("/run/secrets/{n}");
        match &svc.secrets {
            None => vec![],
            Some(dc::Secrets::Simple(names)) => {
                names.iter().map(|n| (n.clone(), default(n))).collect()
            }
            Some(dc::Secrets::Advanced(list)) => list
                .iter()
                .map(|s| {
                    let t = match &s.target {
                        Some(t) if t.starts_with('/') => t.clone(),
                        Some(t) => default(t),
                        None => default(&s.source),
                    };
                    (s.source.clone(), t)
                })
                .collect(),
        }
    }

    /// The service's command line, as a list.
    pub fn command(svc: &dc::Service) -> Vec<String> {
        match &svc.command {
            Some(dc::Command::Args(a)) => a.clone(),
            Some(dc::Command::Simple(s)) => s.split_whitespace().map(str::to_string).collect(),
            None => vec![],
        }
    }

    /// The value of a `--flag=value` (or `--flag value`) of the command.
    pub fn flag(svc: &dc::Service, flag: &str) -> Option<String> {
        let cmd = Self::command(svc);
        let eq = format!("{flag}=");
        cmd.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix(&eq)
                .map(str::to_string)
                .or_else(|| (a == flag).then(|| cmd.get(i + 1).cloned()).flatten())
        })
    }

    /// The value of one environment variable of the service (`environment`
    /// over `env_file`), for settings that are not secrets.
    pub fn env_value(&self, svc: &dc::Service, name: &str) -> Option<String> {
        let set = match &svc.environment {
            dc::Environment::List(l) => l.iter().find_map(|e| {
                let (k, v) = e.split_once('=')?;
                (k == name).then(|| v.to_string())
            }),
            dc::Environment::KvPair(m) => m.get(name).cloned().flatten().map(|v| v.to_string()),
        };
        set.or_else(|| {
            self.env_files(svc)
                .into_iter()
                .find_map(|mut m| m.remove(name))
        })
    }

    fn env_files(&self, svc: &dc::Service) -> Vec<BTreeMap<String, String>> {
        let files = match &svc.env_file {
            Some(dc::StringOrList::Simple(f)) => vec![f.clone()],
            Some(dc::StringOrList::List(l)) => l.clone(),
            None => vec![],
        };
        files
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.join(f)).ok())
            .map(|t| dot_env(&t))
            .collect()
    }

    /// Names of the environment variables the service is given (values
    /// never leave this module: they may be secrets).
    pub fn env_names(&self, svc: &dc::Service) -> Vec<String> {
        let mut out: Vec<String> = match &svc.environment {
            dc::Environment::List(l) => l
                .iter()
                .map(|e| e.split('=').next().unwrap_or(e).to_string())
                .collect(),
            dc::Environment::KvPair(m) => m.keys().cloned().collect(),
        };
        for m in self.env_files(svc) {
            out.extend(m.into_keys());
        }
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_env_reads_compose_lines() {
        let m = dot_env("# c\nA=1\nexport B='two words'\nC=\"q\" # c\nD=x # note\nbad\n");
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "q");
        assert_eq!(m["D"], "x");
        assert_eq!(m.len(), 4);
    }
}
