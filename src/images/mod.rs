//! Making every image present: the official images pinned by version from a
//! registry, or the same versions built offline from Debian packages into
//! `FROM scratch` images (binary + its shared libraries + data files), and
//! the project's own image (the firedrill binary) for fixtures and the Teams
//! mock. An image is rebuilt only when its inputs change.

use anyhow::{anyhow, bail, Context, Result};
use bollard::image::{BuildImageOptions, CreateImageOptions};
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod debian;
mod postgres;

use crate::spec::stack::Kind;
use debian::shared_libs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ImageSource {
    /// Use what is present; else pull; else build offline.
    #[default]
    Auto,
    Registry,
    Offline,
}

/// A monitoring component and how to get it.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    pub name: &'static str,
    /// The service kind that runs this image.
    pub kind: Kind,
    /// The official image, pinned.
    pub registry: &'static str,
    /// Debian trixie package and the upstream version prefix it must have.
    pub package: &'static str,
    pub version_prefix: &'static str,
    pub recipe: Recipe,
}

/// How a component's offline image is put together.
#[derive(Debug, Clone, Copy)]
pub enum Recipe {
    /// A Go binary: the binary, the host's libc it links, its data files.
    Binary {
        /// (path in the package, path in the image)
        binary: (&'static str, &'static str),
        data: &'static [(&'static str, &'static str)],
        /// Empty folders the component writes to.
        dirs: &'static [&'static str],
    },
    /// PostgreSQL: server, initdb, a shell, their trixie libraries.
    Postgres,
}

pub const PROMETHEUS: Component = Component {
    name: "prometheus",
    kind: Kind::Prometheus,
    registry: "prom/prometheus:v2.53.3",
    package: "prometheus",
    version_prefix: "2.53.",
    recipe: Recipe::Binary {
        binary: ("usr/bin/prometheus", "bin/prometheus"),
        data: &[],
        dirs: &["prometheus", "etc/prometheus", "tmp"],
    },
};

pub const ALERTMANAGER: Component = Component {
    name: "alertmanager",
    kind: Kind::Alertmanager,
    registry: "prom/alertmanager:v0.28.1",
    package: "prometheus-alertmanager",
    version_prefix: "0.28.",
    recipe: Recipe::Binary {
        binary: ("usr/bin/prometheus-alertmanager", "bin/alertmanager"),
        // Debian's build reads its templates from here.
        data: &[
            (
                "usr/share/prometheus/alertmanager/default.tmpl",
                "usr/share/prometheus/alertmanager/default.tmpl",
            ),
            (
                "usr/share/prometheus/alertmanager/email.tmpl",
                "usr/share/prometheus/alertmanager/email.tmpl",
            ),
        ],
        dirs: &["alertmanager", "etc/alertmanager", "tmp"],
    },
};

pub const NODE_EXPORTER: Component = Component {
    name: "node-exporter",
    kind: Kind::NodeExporter,
    registry: "prom/node-exporter:v1.9.0",
    package: "prometheus-node-exporter",
    version_prefix: "1.9.",
    recipe: Recipe::Binary {
        binary: ("usr/bin/prometheus-node-exporter", "bin/node_exporter"),
        data: &[],
        dirs: &["tmp"],
    },
};

pub const POSTGRES_EXPORTER: Component = Component {
    name: "postgres-exporter",
    kind: Kind::PostgresExporter,
    registry: "prometheuscommunity/postgres-exporter:v0.17.1",
    package: "prometheus-postgres-exporter",
    version_prefix: "0.17.",
    recipe: Recipe::Binary {
        binary: (
            "usr/bin/prometheus-postgres-exporter",
            "bin/postgres_exporter",
        ),
        data: &[],
        dirs: &["tmp"],
    },
};

pub const POSTGRES: Component = Component {
    name: "postgres",
    kind: Kind::Postgres,
    registry: "postgres:17",
    package: "postgresql-17",
    version_prefix: "17.",
    recipe: Recipe::Postgres,
};

pub const COMPONENTS: [Component; 5] = [
    PROMETHEUS,
    ALERTMANAGER,
    NODE_EXPORTER,
    POSTGRES_EXPORTER,
    POSTGRES,
];

/// Components with no offline source: used only if already present.
pub const GRAFANA: &str = "grafana/grafana:11.6.0";
pub const CADVISOR: &str = "gcr.io/cadvisor/cadvisor:v0.49.1";

/// Bumped when the offline recipe changes, so old images are rebuilt.
const RECIPE: &str = "firedrill-offline-v2";
const INPUTS_LABEL: &str = "firedrill.inputs";

/// The image to run for each kind of service.
#[derive(Debug, Clone)]
pub struct Images {
    pub by_component: HashMap<&'static str, String>,
    pub firedrill: String,
    /// Optional components: image, or the reason it is absent.
    pub grafana: Result<String, String>,
    pub cadvisor: Result<String, String>,
}

impl Images {
    pub fn component(&self, name: &str) -> Result<&str> {
        self.by_component
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("no image for {name}"))
    }
}

async fn present(docker: &Docker, image: &str) -> Option<HashMap<String, String>> {
    let i = docker.inspect_image(image).await.ok()?;
    Some(i.config.and_then(|c| c.labels).unwrap_or_default())
}

async fn pull(docker: &Docker, image: &str) -> Result<()> {
    let (from, tag) = image.rsplit_once(':').unwrap_or((image, "latest"));
    let mut s = docker.create_image(
        Some(CreateImageOptions {
            from_image: from,
            tag,
            ..Default::default()
        }),
        None,
        None,
    );
    while let Some(ev) = s.next().await {
        ev.with_context(|| format!("pulling {image}"))?;
    }
    Ok(())
}

/// Makes every image present and says which to run.
pub async fn ensure(docker: &Docker, source: ImageSource, firedrill_bin: &Path) -> Result<Images> {
    let mut by_component = HashMap::new();
    for c in &COMPONENTS {
        let img = ensure_component(docker, source, c).await?;
        by_component.insert(c.name, img);
    }
    let firedrill = ensure_firedrill(docker, firedrill_bin).await?;
    Ok(Images {
        by_component,
        firedrill,
        grafana: optional(docker, source, GRAFANA).await,
        cadvisor: optional(docker, source, CADVISOR).await,
    })
}

/// An image with no offline source: present, pulled, or the reason it is absent.
async fn optional(docker: &Docker, source: ImageSource, img: &str) -> Result<String, String> {
    match present(docker, img).await {
        Some(_) => Ok(img.to_string()),
        None if source != ImageSource::Offline => match pull(docker, img).await {
            Ok(()) => Ok(img.to_string()),
            Err(e) => Err(format!(
                "{img} is not present and cannot be pulled ({}); it has no offline source",
                root_cause(&e)
            )),
        },
        None => Err(format!("{img} is not present and has no offline source")),
    }
}

fn root_cause(e: &anyhow::Error) -> String {
    e.root_cause()
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// What an offline image's inputs label starts with: a change of the recipe
/// (PostgreSQL's entrypoint included) rebuilds it.
fn recipe_id(c: &Component) -> String {
    match c.recipe {
        Recipe::Binary { .. } => RECIPE.to_string(),
        Recipe::Postgres => format!("{RECIPE}+pg-{}", postgres::recipe_digest()),
    }
}

fn offline_tag(c: &Component) -> String {
    format!("firedrill/{}:{}debian", c.name, c.version_prefix)
}

async fn ensure_component(docker: &Docker, source: ImageSource, c: &Component) -> Result<String> {
    let offline = offline_tag(c);
    let offline_ok = present(docker, &offline).await.is_some_and(|l| {
        l.get(INPUTS_LABEL)
            .is_some_and(|v| v.starts_with(&recipe_id(c)))
    });
    match source {
        ImageSource::Registry => {
            if present(docker, c.registry).await.is_none() {
                pull(docker, c.registry).await?;
            }
            Ok(c.registry.to_string())
        }
        ImageSource::Offline => {
            if !offline_ok {
                build_offline(docker, c).await?;
            }
            Ok(offline)
        }
        ImageSource::Auto => {
            if present(docker, c.registry).await.is_some() {
                return Ok(c.registry.to_string());
            }
            if offline_ok {
                return Ok(offline);
            }
            match pull(docker, c.registry).await {
                Ok(()) => Ok(c.registry.to_string()),
                Err(e) => {
                    tracing::info!(
                        "{} cannot be pulled ({}); building it from Debian packages",
                        c.registry,
                        root_cause(&e)
                    );
                    build_offline(docker, c).await?;
                    Ok(offline)
                }
            }
        }
    }
}

/// A build context: a Dockerfile, a rootfs owned by root and a part owned
/// by the image's user (`COPY` makes everything root's unless told).
struct BuildContext {
    tar: tar::Builder<Vec<u8>>,
    hasher: Sha256,
    owned: bool,
}

/// The uid and gid of a non-root image user (PostgreSQL refuses root).
pub const IMAGE_USER: u32 = 999;

impl BuildContext {
    fn new() -> Self {
        BuildContext {
            tar: tar::Builder::new(Vec::new()),
            hasher: Sha256::new(),
            owned: false,
        }
    }
    fn add(&mut self, path: &str, data: &[u8], mode: u32) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        self.tar.append_data(&mut h, path, data)?;
        self.hasher.update(path.as_bytes());
        self.hasher.update(data);
        Ok(())
    }
    fn add_dir(&mut self, path: &str, mode: u32) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        self.tar
            .append_data(&mut h, format!("{path}/"), std::io::empty())?;
        self.hasher.update(path.as_bytes());
        Ok(())
    }
    /// A world-writable folder in the image (`tmp`, a data folder).
    fn dir(&mut self, in_image: &str) -> Result<()> {
        self.add_dir(
            &format!("rootfs/{}", in_image.trim_start_matches('/')),
            0o1777,
        )
    }
    /// A folder owned by [`IMAGE_USER`].
    fn owned_dir(&mut self, in_image: &str, mode: u32) -> Result<()> {
        self.owned = true;
        self.add_dir(&format!("owned/{}", in_image.trim_start_matches('/')), mode)
    }
    fn file(&mut self, in_image: &str, data: &[u8], mode: u32) -> Result<()> {
        self.add(
            &format!("rootfs/{}", in_image.trim_start_matches('/')),
            data,
            mode,
        )
    }
    fn file_from_host(&mut self, host: &Path, in_image: &str) -> Result<()> {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        self.file(in_image, &data, 0o755)
    }
    fn digest(&self) -> String {
        format!("{:x}", self.hasher.clone().finalize())[..16].to_string()
    }
}

/// Builds `FROM scratch` with the context's files; `tail` ends the
/// Dockerfile (ENTRYPOINT, USER, ENV).
async fn build(
    docker: &Docker,
    mut ctx: BuildContext,
    tag: &str,
    tail: &str,
    inputs: String,
) -> Result<()> {
    let owned = if ctx.owned {
        format!("COPY --chown={IMAGE_USER}:{IMAGE_USER} owned/ /\n")
    } else {
        String::new()
    };
    let dockerfile =
        format!("FROM scratch\nCOPY rootfs/ /\n{owned}LABEL {INPUTS_LABEL}=\"{inputs}\"\n{tail}");
    ctx.add("Dockerfile", dockerfile.as_bytes(), 0o644)?;
    let body = ctx.tar.into_inner()?;
    let opts = BuildImageOptions {
        dockerfile: "Dockerfile".to_string(),
        t: tag.to_string(),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut s = docker.build_image(opts, None, Some(body.into()));
    while let Some(ev) = s.next().await {
        let ev = ev.with_context(|| format!("building {tag}"))?;
        if let Some(err) = ev.error {
            bail!("building {tag}: {err}");
        }
    }
    prune_superseded(docker).await;
    Ok(())
}

fn entrypoint(path: &str) -> String {
    format!("ENTRYPOINT [\"{path}\"]\n")
}

/// Removes firedrill's own images that a rebuild left untagged.
async fn prune_superseded(docker: &Docker) {
    let filters: HashMap<String, Vec<String>> = [
        ("dangling".to_string(), vec!["true".to_string()]),
        ("label".to_string(), vec![INPUTS_LABEL.to_string()]),
    ]
    .into();
    let list = docker
        .list_images(Some(bollard::image::ListImagesOptions {
            filters,
            ..Default::default()
        }))
        .await;
    for img in list.unwrap_or_default() {
        let _ = docker.remove_image(&img.id, None, None).await;
    }
}

/// Builds a component from Debian packages into a `FROM scratch` image.
pub async fn build_offline(docker: &Docker, c: &Component) -> Result<()> {
    let started = std::time::Instant::now();
    let c = *c;
    let (ctx, tail, inputs) = tokio::task::spawn_blocking(move || match c.recipe {
        Recipe::Binary { binary, data, dirs } => binary_context(&c, binary, data, dirs),
        Recipe::Postgres => postgres::context(&c),
    })
    .await??;
    let tag = offline_tag(&c);
    build(docker, ctx, &tag, &tail, inputs).await?;
    tracing::info!(
        "built {tag} from Debian packages in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Refuses a package whose upstream version is not the pinned one.
fn check_version(c: &Component, version: &str) -> Result<()> {
    if !version.starts_with(c.version_prefix) {
        bail!(
            "Debian trixie has {} {version}; firedrill pins {}x",
            c.package,
            c.version_prefix
        );
    }
    Ok(())
}

type Context3 = (BuildContext, String, String);

fn binary_context(
    c: &Component,
    binary: (&str, &str),
    data: &[(&str, &str)],
    dirs: &[&str],
) -> Result<Context3> {
    let staging = debian::Staging::single(c.name, c.package)?;
    let version = staging.versions[c.package].clone();
    check_version(c, &version)?;
    let mut ctx = BuildContext::new();
    let bin = staging.path(binary.0);
    ctx.file_from_host(&bin, binary.1)?;
    for lib in shared_libs(&bin)? {
        ctx.file_from_host(&lib, &lib.to_string_lossy())?;
    }
    for (from, to) in data {
        ctx.file_from_host(&staging.path(from), to)?;
    }
    for d in dirs {
        ctx.dir(d)?;
    }
    let inputs = format!("{}/{}={version}/{}", recipe_id(c), c.package, ctx.digest());
    let _ = std::fs::remove_dir_all(&staging.root);
    Ok((ctx, entrypoint(&format!("/{}", binary.1)), inputs))
}

/// The project's own image: the firedrill binary and its shared libraries.
/// Tagged by content, so it is rebuilt exactly when the binary changes.
pub async fn ensure_firedrill(docker: &Docker, bin: &Path) -> Result<String> {
    let mut ctx = BuildContext::new();
    ctx.file_from_host(bin, "firedrill")?;
    for lib in shared_libs(bin)? {
        ctx.file_from_host(&lib, &lib.to_string_lossy())?;
    }
    ctx.dir("tmp")?;
    ctx.dir("etc/firedrill")?;
    let digest = ctx.digest();
    let tag = format!("firedrill/firedrill:{digest}");
    if present(docker, &tag).await.is_none() {
        build(
            docker,
            ctx,
            &tag,
            &entrypoint("/firedrill"),
            format!("{RECIPE}/{digest}"),
        )
        .await?;
    }
    Ok(tag)
}

/// The firedrill binary to put in the image: this executable when it is
/// firedrill, else `FIREDRILL_BIN` or a `firedrill` beside the test binary.
pub fn firedrill_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("FIREDRILL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    if exe.file_stem().is_some_and(|s| s == "firedrill") {
        return Ok(exe);
    }
    // cargo test: target/debug/deps/<test> -> target/debug/firedrill
    for dir in exe.ancestors().skip(1).take(2) {
        let cand = dir.join("firedrill");
        if cand.is_file() {
            return Ok(cand);
        }
    }
    bail!("cannot find the firedrill binary for the fixture image; set FIREDRILL_BIN")
}
