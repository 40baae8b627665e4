//! The images of a stack's `kind: container` services: the one a service
//! names, present or pulled, or one built from its `build` context, tagged
//! by the context's content so that it is rebuilt exactly when the context,
//! its Dockerfile or its arguments change. Made before any container of the
//! run starts, so a failed build or pull leaves nothing running.

use super::{present, pull, root_cause, INPUTS_LABEL};
use crate::error::{bail, err, Context, Error, Result};
use crate::spec::stack::{BuildSpec, Kind, Stack};
use bollard::image::BuildImageOptions;
use bollard::Docker;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The image a container service runs, and what the image says of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceImage {
    /// The image reference.
    pub image: String,
    /// The image has a `HEALTHCHECK` of its own: readiness waits for it.
    pub healthcheck: bool,
    /// The uid the image runs as, where it is numeric (the owner of the
    /// files copied in, so that a non-root service reads its secrets).
    pub uid: u32,
}

/// The image of every `kind: container` service of `stack`, by service.
pub async fn of_stack(docker: &Docker, stack: &Stack) -> Result<BTreeMap<String, ServiceImage>> {
    let mut out = BTreeMap::new();
    for (name, svc) in &stack.doc.services {
        if svc.kind != Kind::Container {
            continue;
        }
        let image = match (&svc.image, &svc.build) {
            (_, Some(b)) => build(docker, stack, name, b.spec()).await?,
            (Some(i), None) => {
                if present(docker, i).await.is_none() {
                    pull(docker, i).await.map_err(|e| {
                        err!(
                            Image,
                            "services.{name}: image {i} is not present and could not be pulled ({}); build it, or give a `build` context",
                            root_cause(&e)
                        )
                    })?;
                }
                i.clone()
            }
            (None, None) => unreachable!("checked when the stack is loaded"),
        };
        out.insert(name.clone(), inspect(docker, &image).await?);
    }
    Ok(out)
}

/// What the engine says of `image`: its healthcheck and user.
async fn inspect(docker: &Docker, image: &str) -> Result<ServiceImage> {
    let i = docker
        .inspect_image(image)
        .await
        .context(Error::Image, format!("inspecting {image}"))?;
    let config = i.config.unwrap_or_default();
    let test = config.healthcheck.and_then(|h| h.test).unwrap_or_default();
    let healthcheck = !test.is_empty() && test[0] != "NONE";
    let uid = config
        .user
        .as_deref()
        .and_then(|u| u.split(':').next()?.parse().ok())
        .unwrap_or(0);
    Ok(ServiceImage {
        image: image.to_string(),
        healthcheck,
        uid,
    })
}

/// Builds service `name`'s image from its context, unless an image of the
/// same inputs is present; the build's last lines make the error.
async fn build(docker: &Docker, stack: &Stack, name: &str, b: BuildSpec) -> Result<String> {
    let ctx = stack.source.relative(&b.context);
    let (body, digest) = {
        let (ctx, b) = (ctx.clone(), b.clone());
        tokio::task::spawn_blocking(move || context_tar(&ctx, &b))
            .await
            .context(Error::Image, "reading the build context")??
    };
    let repo: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let tag = format!("firedrill/build-{repo}:{}", &digest[..16]);
    if present(docker, &tag).await.is_some() {
        return Ok(tag);
    }
    let started = std::time::Instant::now();
    let opts = BuildImageOptions {
        dockerfile: b.dockerfile().to_string(),
        t: tag.clone(),
        rm: true,
        forcerm: true,
        buildargs: b.args.clone().into_iter().collect(),
        labels: [(INPUTS_LABEL.to_string(), format!("build/{digest}"))].into(),
        ..Default::default()
    };
    let mut lines: Vec<String> = Vec::new();
    let mut s = docker.build_image(opts, None, Some(body.into()));
    while let Some(ev) = s.next().await {
        let failed = |m: String, lines: &[String]| {
            err!(
                Image,
                "services.{name}: building its image from {} failed: {m}; the build's last lines:\n{}",
                ctx.display(),
                lines[lines.len().saturating_sub(10)..].join("\n")
            )
        };
        let ev = ev.map_err(|e| failed(root_cause(&e), &lines))?;
        if let Some(out) = ev.stream {
            lines.extend(
                out.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string),
            );
        }
        if let Some(e) = ev.error {
            return Err(failed(e, &lines));
        }
    }
    if present(docker, &tag).await.is_none() {
        bail!(
            Image,
            "services.{name}: the build of {tag} ended with no image"
        );
    }
    tracing::info!(
        "built {tag} for {name} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(tag)
}

/// The context as a tar body (mtimes zeroed), and the digest of its paths,
/// modes and contents with the Dockerfile's name and the build arguments.
fn context_tar(ctx: &Path, b: &BuildSpec) -> Result<(Vec<u8>, String)> {
    let mut files = Vec::new();
    walk(ctx, "", &mut files)?;
    files.sort();
    let mut tar = tar::Builder::new(Vec::new());
    let mut hasher = Sha256::new();
    for (rel, mode) in &files {
        let data = std::fs::read(ctx.join(rel))
            .context(Error::Image, format!("reading {}", ctx.join(rel).display()))?;
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, rel, data.as_slice())?;
        hasher.update(rel.as_bytes());
        hasher.update(mode.to_le_bytes());
        hasher.update(&data);
    }
    hasher.update(b.dockerfile().as_bytes());
    for (k, v) in &b.args {
        hasher.update(format!("\0{k}={v}").as_bytes());
    }
    Ok((tar.into_inner()?, format!("{:x}", hasher.finalize())))
}

/// Every file under `dir`, relative, with its mode.
fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, u32)>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let entries =
        std::fs::read_dir(dir).context(Error::Image, format!("reading {}", dir.display()))?;
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        let path = match rel {
            "" => name,
            r => format!("{r}/{name}"),
        };
        let meta = std::fs::metadata(e.path())?;
        if meta.is_dir() {
            walk(&e.path(), &path, out)?;
        } else {
            out.push((path, meta.permissions().mode() & 0o7777));
        }
    }
    Ok(())
}
