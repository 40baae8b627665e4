//! Making every image present: the official images pinned by version from a
//! registry, or the same versions built offline from Debian packages into
//! `FROM scratch` images (binary + its shared libraries + data files), and
//! the project's own image (the firedrill binary) for fixtures and the Teams
//! mock. An image is rebuilt only when its inputs change.

use crate::error::{bail, err, Context, Error, Result};
use bollard::image::{BuildImageOptions, CreateImageOptions};
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

mod debian;
pub mod gpu;
mod postgres;
mod service;
pub use service::ServiceImage;

use crate::components::{self, Kind, Recipe};
use debian::shared_libs;

/// Where the images of the stack's components come from (`--source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ImageSource {
    /// Use what is present; else pull; else build offline.
    #[default]
    Auto,
    /// The official images, pinned, pulled when absent.
    Registry,
    /// Images built from Debian packages, no registry (optional components without offline source are skipped).
    Offline,
}

/// A component with an offline recipe, as this module uses it: a view of
/// its row in [`components::TABLE`].
#[derive(Debug, Clone, Copy)]
pub struct Component {
    /// Its name (image tags, staging folders).
    pub name: &'static str,
    /// The official image, pinned.
    pub registry: &'static str,
    /// Debian trixie package and the upstream version prefix it must have.
    pub package: &'static str,
    /// The upstream version the package must have.
    pub version_prefix: &'static str,
    /// How its offline image is put together.
    pub recipe: Recipe,
}

/// Every component with a pinned image, with its kind.
pub fn pinned() -> impl Iterator<Item = (Kind, Component)> {
    components::TABLE.iter().filter_map(|c| match c.image {
        components::Image::Pinned(o) => Some((
            c.kind,
            Component {
                name: c.name,
                registry: o.registry,
                package: o.package,
                version_prefix: o.version_prefix,
                recipe: o.recipe,
            },
        )),
        _ => None,
    })
}

/// Bumped when the offline recipe changes, so old images are rebuilt.
const RECIPE: &str = "firedrill-offline-v2";
const INPUTS_LABEL: &str = "firedrill.inputs";

/// The image to run for each kind of service.
#[derive(Debug, Clone)]
pub struct Images {
    /// Components with a pinned image: the image to run.
    pub pinned: BTreeMap<Kind, String>,
    /// The project's own image (fixtures, the Teams mock).
    pub firedrill: String,
    /// Optional components: image, or the reason it is absent.
    pub optional: BTreeMap<Kind, Optional>,
    /// The image of each `kind: container` service of the stack being
    /// brought up (see [`Images::with_services`]), by service.
    pub services: BTreeMap<String, ServiceImage>,
}

/// An image with no offline source: present, or skipped and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Optional {
    /// The image to run.
    Present(String),
    /// Why the component cannot run here (its service is reported skipped).
    Skipped(String),
    /// firedrill's own stand-in runs instead (this image), and why.
    StandIn(String, String),
    /// A component that reads GPUs, on a machine that cannot give a
    /// container one (why): its service's fixture profile plays it, or it
    /// is skipped.
    NoGpu(String),
}

impl Images {
    /// The image a service of `kind` runs, or why it cannot run here.
    pub fn for_kind(&self, kind: Kind) -> Result<Optional> {
        Ok(match components::of(kind).image {
            components::Image::Firedrill => Optional::Present(self.firedrill.clone()),
            components::Image::Pinned(_) => Optional::Present(
                self.pinned
                    .get(&kind)
                    .cloned()
                    .ok_or_else(|| err!(Image, "no image for {kind:?}"))?,
            ),
            components::Image::Optional(_) | components::Image::OrStandIn(..) => self
                .optional
                .get(&kind)
                .cloned()
                .ok_or_else(|| err!(Image, "no image for {kind:?}"))?,
            components::Image::Service => {
                bail!(
                    Image,
                    "a {kind:?} service's image is its own: see `services`"
                )
            }
        })
    }

    /// These images with those of `stack`'s container services: pulled or
    /// built now, before any container of the run starts.
    pub async fn with_services(
        &self,
        docker: &Docker,
        stack: &crate::spec::stack::Stack,
    ) -> Result<Images> {
        Ok(Images {
            services: service::of_stack(docker, stack).await?,
            ..self.clone()
        })
    }
}

async fn present(docker: &Docker, image: &str) -> Option<HashMap<String, String>> {
    let i = docker.inspect_image(image).await.ok()?;
    Some(i.config.and_then(|c| c.labels).unwrap_or_default())
}

async fn pull(docker: &Docker, image: &str) -> Result<(), bollard::errors::Error> {
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
        ev?;
    }
    Ok(())
}

/// Makes every image present and says which to run. The project's own
/// image needs a firedrill binary: see [`firedrill_binary`].
pub async fn ensure(docker: &Docker, source: ImageSource) -> Result<Images> {
    let firedrill_bin = firedrill_binary().await?;
    let mut pinned_images = BTreeMap::new();
    for (kind, c) in pinned() {
        let img = ensure_component(docker, source, &c).await?;
        pinned_images.insert(kind, img);
    }
    let firedrill = ensure_firedrill(docker, &firedrill_bin).await?;
    let mut optional_images = BTreeMap::new();
    // Only loads NVML; a machine with no GPU pulls no GPU image.
    let gpu = gpu::for_containers();
    for c in &components::TABLE {
        match c.image {
            components::Image::Optional(img) => {
                optional_images.insert(c.kind, optional(docker, source, img).await);
            }
            components::Image::OrStandIn(_, _) if c.gpu && gpu.is_err() => {
                let why = gpu.clone().err().unwrap_or_default();
                optional_images.insert(c.kind, Optional::NoGpu(why));
            }
            components::Image::OrStandIn(img, _) => {
                let o = match optional(docker, source, img).await {
                    Optional::Skipped(why) => Optional::StandIn(firedrill.clone(), why),
                    o => o,
                };
                optional_images.insert(c.kind, o);
            }
            _ => {}
        }
    }
    Ok(Images {
        pinned: pinned_images,
        firedrill,
        optional: optional_images,
        services: BTreeMap::new(),
    })
}

/// An image with no offline source: present, pulled, or the reason it is absent.
async fn optional(docker: &Docker, source: ImageSource, img: &str) -> Optional {
    match present(docker, img).await {
        Some(_) => Optional::Present(img.to_string()),
        None if source != ImageSource::Offline => match pull(docker, img).await {
            Ok(()) => Optional::Present(img.to_string()),
            Err(e) => Optional::Skipped(format!(
                "{img} is not present and cannot be pulled ({}); it has no offline source",
                root_cause(&e)
            )),
        },
        None => Optional::Skipped(format!("{img} is not present and has no offline source")),
    }
}

/// The engine's own words for a failed pull, in a line.
fn root_cause(e: &bollard::errors::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
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
                pull(docker, c.registry)
                    .await
                    .context(Error::Image, format!("pulling {}", c.registry))?;
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

pub use crate::components::IMAGE_USER;

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
        let data =
            std::fs::read(host).context(Error::Image, format!("reading {}", host.display()))?;
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
        let ev = ev.context(Error::Image, format!("building {tag}"))?;
        if let Some(err) = ev.error {
            bail!(Image, "building {tag}: {err}");
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
    .await
    .context(Error::Image, "building the image context")??;
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
            Image,
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

/// The firedrill binary to put in the image, the first of: `FIREDRILL_BIN`;
/// this executable when it is firedrill; a `firedrill` beside the test
/// binary (`cargo test` in this crate); else one built from this library's
/// own sources with cargo, once, into the caller's target folder (a user's
/// own `cargo test`, where cargo builds no binary of a dependency).
pub async fn firedrill_binary() -> Result<PathBuf> {
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
    build_own_binary(&exe).await
}

/// `cargo build --bin firedrill` of this library's own crate, into a
/// folder of its own under the caller's target folder (beside `debug/`):
/// the caller's cargo holds its own build folder locked while tests run.
async fn build_own_binary(exe: &Path) -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The caller's target folder: CARGO_TARGET_DIR, else the `target`
    // its executable lives under (a test's target/debug/deps/, a program's
    // target/debug/), else a temporary folder.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            exe.ancestors()
                .find(|a| a.file_name().is_some_and(|n| n == "target"))
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("firedrill-bin");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    tracing::info!(
        "building the firedrill binary for the fixture image from {} (once)",
        dir.display()
    );
    let mut cmd = tokio::process::Command::new(&cargo);
    cmd.args(["build", "--quiet", "--bin", "firedrill", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        // For this machine (the image runs it with this machine's
        // libraries), wherever the caller cross-compiles to.
        .env_remove("CARGO_BUILD_TARGET")
        .kill_on_drop(true);
    if dir.join("Cargo.lock").is_file() {
        // The versions this crate was tested with; its lock file is not rewritten.
        cmd.arg("--locked");
    }
    let out = cmd.output().await.map_err(|e| {
        err!(
            Image,
            "cannot run cargo to build the firedrill binary ({e}); set FIREDRILL_BIN"
        )
    })?;
    if !out.status.success() {
        bail!(
            Image,
            "building the firedrill binary for the fixture image failed ({}); set FIREDRILL_BIN\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    Ok(target.join("debug").join("firedrill"))
}
