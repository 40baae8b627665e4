//! What a `kind: container` service says, as Compose says it: the image or
//! the context it is built from, Docker's healthcheck, the files copied in;
//! and the checks that keep those keys to that kind, each error located in
//! stack.yaml.

use super::*;
use crate::spec::Dur;

/// Compose's `build`: a context folder, or the folder with its Dockerfile
/// and build arguments.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Build {
    /// `build: ./backend`
    Context(String),
    /// `build: {context: ./backend, dockerfile: Dockerfile.prod, args: {…}}`
    Full(BuildSpec),
}

/// A build context with its Dockerfile and build arguments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildSpec {
    /// The folder sent to the engine, relative to stack.yaml.
    pub context: String,
    /// The Dockerfile, relative to the context (default `Dockerfile`).
    pub dockerfile: Option<String>,
    /// The stage of a multi-stage Dockerfile to build.
    pub target: Option<String>,
    /// `ARG` values.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
}

impl Build {
    /// The context, Dockerfile and arguments, whichever form was written.
    pub fn spec(&self) -> BuildSpec {
        match self {
            Build::Context(c) => BuildSpec {
                context: c.clone(),
                dockerfile: None,
                target: None,
                args: BTreeMap::new(),
            },
            Build::Full(b) => b.clone(),
        }
    }
}

impl BuildSpec {
    /// The Dockerfile's path inside the context.
    pub fn dockerfile(&self) -> &str {
        self.dockerfile.as_deref().unwrap_or("Dockerfile")
    }
}

/// Compose's `healthcheck`: the container is ready once Docker reports it
/// healthy; a container Docker finds unhealthy fails the bring-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// `["CMD", "prog", "arg"]`, `["CMD-SHELL", "line"]`, or a line for the shell.
    pub test: Test,
    /// Between checks (Docker's default 30s: a drill wants a second or two).
    pub interval: Option<Dur>,
    /// The longest one check may take.
    pub timeout: Option<Dur>,
    /// Failures in a row before it is unhealthy.
    pub retries: Option<u32>,
    /// Failures during this start-up time do not count.
    pub start_period: Option<Dur>,
}

/// A healthcheck's `test`, in either of Compose's forms.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Test {
    /// A line run by the container's shell (`CMD-SHELL`).
    Shell(String),
    /// Docker's form: `CMD` or `CMD-SHELL` first.
    Exec(Vec<String>),
}

impl Healthcheck {
    /// Docker's form of the test.
    pub fn docker_test(&self) -> Vec<String> {
        match &self.test {
            Test::Shell(line) => vec!["CMD-SHELL".into(), line.clone()],
            Test::Exec(v) => v.clone(),
        }
    }
}

/// The keys only a `kind: container` service takes, and theirs checked:
/// an image or a build context (not both), a port, files that exist, a
/// healthcheck Docker runs, a readiness path.
pub(super) fn check_container(
    source: &Source,
    name: &str,
    svc: &ServiceSpec,
    errors: &mut Vec<SpecError>,
) {
    let at = |k: &str| format!("services.{name}.{k}");
    if svc.kind != Kind::Container {
        return check_foreign_keys(source, name, svc, errors);
    }
    check_image(source, name, svc, errors);
    check_foreign_keys(source, name, svc, errors);
    let mut err = |path: String, m: String| errors.push(source.error(&path, m));
    if svc.port.is_none() {
        err(
            format!("services.{name}"),
            "a container service needs `port`: the one it listens on (published on 127.0.0.1, reached by readiness and scrapes)".into(),
        );
    }
    for (path, from) in &svc.files {
        if !path.starts_with('/') {
            err(
                at(&format!("files.{path}")),
                format!("`{path}` is not an absolute path in the container"),
            );
        } else if !source.relative(from).exists() {
            err(
                at(&format!("files.{path}")),
                format!("{} does not exist", source.relative(from).display()),
            );
        } else if !(source.relative(from).is_file() || source.relative(from).is_dir()) {
            err(
                at(&format!("files.{path}")),
                format!(
                    "{} is not a file or a folder (a socket or a device is not copied)",
                    source.relative(from).display()
                ),
            );
        }
    }
    if let Some(h) = &svc.healthcheck {
        let test = h.docker_test();
        let ok = match test.first().map(String::as_str) {
            Some("CMD" | "CMD-SHELL") => test.len() > 1,
            _ => false,
        };
        if !ok {
            err(
                at("healthcheck.test"),
                "a healthcheck test is `[\"CMD\", prog, args…]`, `[\"CMD-SHELL\", line]` or a line for the shell".into(),
            );
        }
    }
    if let Some(r) = &svc.ready {
        if !r.starts_with('/') {
            err(
                at("ready"),
                format!("`{r}` is not an HTTP path (`/healthz`)"),
            );
        }
    }
}

/// An image or a build context whose Dockerfile exists, not both.
fn check_image(source: &Source, name: &str, svc: &ServiceSpec, errors: &mut Vec<SpecError>) {
    let at = format!("services.{name}.build");
    let mut err = |path: &str, m: String| errors.push(source.error(path, m));
    match (&svc.image, &svc.build) {
        (None, None) => err(
            &format!("services.{name}"),
            "a container service needs `image` (one the engine has or can pull) or `build` (a context to build it from)".into(),
        ),
        (Some(_), Some(_)) => err(&at, "`image` and `build` both given: give one".into()),
        (None, Some(b)) => {
            let b = b.spec();
            let ctx = source.relative(&b.context);
            let outside = Path::new(b.dockerfile())
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)));
            if !ctx.is_dir() {
                err(&at, format!("the build context {} is not a folder", ctx.display()));
            } else if outside {
                err(&at, format!("the Dockerfile `{}` is not a path inside the build context (the context is all the engine is sent)", b.dockerfile()));
            } else if !ctx.join(b.dockerfile()).is_file() {
                err(&at, format!("no {} in the build context {}", b.dockerfile(), ctx.display()));
            }
        }
        (Some(_), None) => {}
    }
}

/// A container's keys on a service of another kind, and another kind's on
/// a container: each refused at its key.
fn check_foreign_keys(source: &Source, name: &str, svc: &ServiceSpec, errors: &mut Vec<SpecError>) {
    let at = |k: &str| format!("services.{name}.{k}");
    let mine = svc.kind == Kind::Container;
    let keys = [
        ("image", svc.image.is_some(), false),
        ("build", svc.build.is_some(), false),
        ("files", !svc.files.is_empty(), false),
        ("healthcheck", svc.healthcheck.is_some(), false),
        ("ready", svc.ready.is_some(), false),
        ("config", svc.config.is_some(), true),
        ("profile", svc.profile.is_some(), true),
        ("variant", svc.variant.is_some(), true),
        ("provisioning", svc.provisioning.is_some(), true),
        ("dashboards", svc.dashboards.is_some(), true),
    ];
    for (k, _, _) in keys.iter().filter(|(_, set, other)| *set && *other == mine) {
        let why = match mine {
            true => format!("a container takes no `{k}`: the files it reads go in `files`"),
            false => format!("`{k}` is for `kind: container` services: a {:?} service runs firedrill's image of it", svc.kind),
        };
        errors.push(source.error(&at(k), why));
    }
}
