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
use std::process::Command;

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
    /// The official image, pinned.
    pub registry: &'static str,
    /// Debian trixie package and the upstream version prefix it must have.
    pub package: &'static str,
    pub version_prefix: &'static str,
    /// (path in the package, path in the image)
    pub binary: (&'static str, &'static str),
    pub data: &'static [(&'static str, &'static str)],
    /// Empty folders the component writes to.
    pub dirs: &'static [&'static str],
}

pub const PROMETHEUS: Component = Component {
    name: "prometheus",
    registry: "prom/prometheus:v2.53.3",
    package: "prometheus",
    version_prefix: "2.53.",
    binary: ("usr/bin/prometheus", "bin/prometheus"),
    data: &[],
    dirs: &["prometheus", "etc/prometheus", "tmp"],
};

pub const ALERTMANAGER: Component = Component {
    name: "alertmanager",
    registry: "prom/alertmanager:v0.28.1",
    package: "prometheus-alertmanager",
    version_prefix: "0.28.",
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
};

pub const NODE_EXPORTER: Component = Component {
    name: "node-exporter",
    registry: "prom/node-exporter:v1.9.0",
    package: "prometheus-node-exporter",
    version_prefix: "1.9.",
    binary: ("usr/bin/prometheus-node-exporter", "bin/node_exporter"),
    data: &[],
    dirs: &["tmp"],
};

pub const COMPONENTS: [Component; 3] = [PROMETHEUS, ALERTMANAGER, NODE_EXPORTER];

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
    for c in COMPONENTS {
        let img = ensure_component(docker, source, &c).await?;
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

fn offline_tag(c: &Component) -> String {
    format!("firedrill/{}:{}debian", c.name, c.version_prefix)
}

async fn ensure_component(docker: &Docker, source: ImageSource, c: &Component) -> Result<String> {
    let offline = offline_tag(c);
    let offline_ok = present(docker, &offline)
        .await
        .is_some_and(|l| l.get(INPUTS_LABEL).is_some_and(|v| v.starts_with(RECIPE)));
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

/// Where downloaded packages and the private apt state live.
fn cache_dir() -> PathBuf {
    std::env::var_os("FIREDRILL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("firedrill")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/firedrill")))
        .unwrap_or_else(|| std::env::temp_dir().join("firedrill-cache"))
}

/// The Debian mirror this machine's apt already uses (a company mirror
/// included): the first `URIs:` of a deb822 file, else the first `deb` line.
pub fn debian_mirror() -> Result<String> {
    if let Ok(m) = std::env::var("FIREDRILL_DEBIAN_MIRROR") {
        return Ok(m);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.push(PathBuf::from("/etc/apt/sources.list"));
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let name = f.to_string_lossy();
        for line in text.lines().map(str::trim) {
            if name.ends_with(".sources") {
                if let Some(uris) = line.strip_prefix("URIs:") {
                    if let Some(u) = uris.split_whitespace().find(|u| !u.contains("security")) {
                        return Ok(u.to_string());
                    }
                }
            } else if name.ends_with(".list") && line.starts_with("deb ") {
                if let Some(u) = line
                    .split_whitespace()
                    .find(|w| w.contains("://") && !w.contains("security"))
                {
                    return Ok(u.to_string());
                }
            }
        }
    }
    bail!("no Debian mirror found in /etc/apt (set FIREDRILL_DEBIAN_MIRROR)")
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Downloads a trixie package with a private apt state: the system's
/// sources, lists and cache are untouched.
fn download_deb(package: &str) -> Result<PathBuf> {
    let dir = cache_dir().join("apt");
    let debs = dir.join("debs");
    for d in ["lists/partial", "cache/archives/partial", "prefs", "debs"] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    let mirror = debian_mirror()?;
    let list = dir.join("sources.list");
    std::fs::write(
        &list,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} trixie main\n"
        ),
    )?;
    let opts = |c: &mut Command| {
        for (k, v) in [
            ("Dir::Etc::SourceList", list.display().to_string()),
            ("Dir::Etc::SourceParts", "/dev/null".into()),
            ("Dir::Etc::Preferences", "/dev/null".into()),
            (
                "Dir::Etc::PreferencesParts",
                dir.join("prefs").display().to_string(),
            ),
            ("Dir::State::Lists", dir.join("lists").display().to_string()),
            ("Dir::Cache", dir.join("cache").display().to_string()),
            ("APT::Architecture", "amd64".into()),
            ("APT::Sandbox::User", "root".into()),
        ] {
            c.arg("-o").arg(format!("{k}={v}"));
        }
    };
    let fresh = dir
        .join("lists")
        .read_dir()
        .map(|d| d.count() > 2)
        .unwrap_or(false);
    if !fresh {
        let mut c = Command::new("apt-get");
        opts(&mut c);
        c.args(["-q", "update"]);
        run(&mut c)?;
    }
    let mut c = Command::new("apt-get");
    opts(&mut c);
    c.current_dir(&debs).args(["-q", "download", package]);
    run(&mut c)?;
    let mut found: Vec<PathBuf> = std::fs::read_dir(&debs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| anyhow!("apt-get download {package} produced no .deb"))
}

/// The shared libraries a dynamic binary needs, as absolute host paths.
fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = run(Command::new("ldd").arg(bin))?;
    let mut libs = Vec::new();
    for line in out.lines() {
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// A build context: a Dockerfile and a rootfs, as a tar body.
struct BuildContext {
    tar: tar::Builder<Vec<u8>>,
    hasher: Sha256,
}

impl BuildContext {
    fn new() -> Self {
        BuildContext {
            tar: tar::Builder::new(Vec::new()),
            hasher: Sha256::new(),
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
    fn dir(&mut self, path: &str) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        h.set_mode(0o1777);
        h.set_mtime(0);
        h.set_cksum();
        self.tar
            .append_data(&mut h, format!("{path}/"), std::io::empty())?;
        Ok(())
    }
    fn file_from_host(&mut self, host: &Path, in_image: &str) -> Result<()> {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        self.add(
            &format!("rootfs/{}", in_image.trim_start_matches('/')),
            &data,
            0o755,
        )
    }
    fn digest(&self) -> String {
        format!("{:x}", self.hasher.clone().finalize())[..16].to_string()
    }
}

async fn build(
    docker: &Docker,
    mut ctx: BuildContext,
    tag: &str,
    entrypoint: &str,
    inputs: String,
) -> Result<()> {
    let dockerfile = format!(
        "FROM scratch\nCOPY rootfs/ /\nLABEL {INPUTS_LABEL}=\"{inputs}\"\nENTRYPOINT [\"{entrypoint}\"]\n"
    );
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

/// Builds a component from its Debian package into a `FROM scratch` image.
pub async fn build_offline(docker: &Docker, c: &Component) -> Result<()> {
    let started = std::time::Instant::now();
    let deb = tokio::task::spawn_blocking({
        let p = c.package;
        move || download_deb(p)
    })
    .await??;
    let fname = deb
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let version = fname.split('_').nth(1).unwrap_or("").to_string();
    let upstream = version.split_once(':').map(|(_, v)| v).unwrap_or(&version);
    if !upstream.starts_with(c.version_prefix) {
        bail!(
            "Debian trixie has {} {version}; firedrill pins {}x",
            c.package,
            c.version_prefix
        );
    }
    let unpack = cache_dir().join("unpack").join(c.name);
    let _ = std::fs::remove_dir_all(&unpack);
    std::fs::create_dir_all(&unpack)?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpack))?;
    let mut ctx = BuildContext::new();
    let bin = unpack.join(c.binary.0);
    ctx.file_from_host(&bin, c.binary.1)?;
    for lib in shared_libs(&bin)? {
        ctx.file_from_host(&lib, &lib.to_string_lossy())?;
    }
    for (from, to) in c.data {
        ctx.file_from_host(&unpack.join(from), to)?;
    }
    for d in c.dirs {
        ctx.dir(&format!("rootfs/{d}"))?;
    }
    let inputs = format!("{RECIPE}/{}={version}/{}", c.package, ctx.digest());
    build(
        docker,
        ctx,
        &offline_tag(c),
        &format!("/{}", c.binary.1),
        inputs,
    )
    .await?;
    tracing::info!(
        "built {} from {} in {:.1}s",
        offline_tag(c),
        fname,
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&unpack);
    Ok(())
}

/// The project's own image: the firedrill binary and its shared libraries.
/// Tagged by content, so it is rebuilt exactly when the binary changes.
pub async fn ensure_firedrill(docker: &Docker, bin: &Path) -> Result<String> {
    let mut ctx = BuildContext::new();
    ctx.file_from_host(bin, "firedrill")?;
    for lib in shared_libs(bin)? {
        ctx.file_from_host(&lib, &lib.to_string_lossy())?;
    }
    ctx.dir("rootfs/tmp")?;
    ctx.dir("rootfs/etc/firedrill")?;
    let digest = ctx.digest();
    let tag = format!("firedrill/firedrill:{digest}");
    if present(docker, &tag).await.is_none() {
        build(
            docker,
            ctx,
            &tag,
            "/firedrill",
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
