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
    /// The uid the image runs as: the owner of the files copied in, so
    /// that a non-root service reads its secrets. `None` for a user named
    /// by name, whose uid is the image's `/etc/passwd`'s to say.
    pub uid: Option<u32>,
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
    let uid = match config
        .user
        .as_deref()
        .map(|u| u.split(':').next().unwrap_or(u))
    {
        None | Some("") | Some("root") => Some(0),
        Some(u) => u.parse().ok(),
    };
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
        target: b.target.clone().unwrap_or_default(),
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

/// The context as a tar body (mtimes zeroed, what `.dockerignore` leaves
/// out left out, symlinks sent as links), and the digest of each entry's
/// path, mode and contents (each length-prefixed) with the Dockerfile's
/// name and the build arguments.
fn context_tar(ctx: &Path, b: &BuildSpec) -> Result<(Vec<u8>, String)> {
    let ignore = Ignore::read(ctx);
    let mut entries = Vec::new();
    walk(ctx, "", &ignore, &mut entries)?;
    entries.sort();
    let mut tar = tar::Builder::new(Vec::new());
    let mut hasher = Sha256::new();
    let field = |h: &mut Sha256, bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for (rel, entry) in &entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(0);
        field(&mut hasher, rel.as_bytes());
        match entry {
            Entry::File(mode) => {
                let data = std::fs::read(ctx.join(rel))
                    .context(Error::Image, format!("reading {}", ctx.join(rel).display()))?;
                h.set_size(data.len() as u64);
                h.set_mode(*mode);
                h.set_cksum();
                tar.append_data(&mut h, rel, data.as_slice())?;
                field(&mut hasher, &mode.to_le_bytes());
                field(&mut hasher, &data);
            }
            Entry::Link(target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                h.set_mode(0o777);
                tar.append_link(&mut h, rel, target)?;
                field(&mut hasher, target.as_os_str().as_encoded_bytes());
            }
        }
    }
    field(&mut hasher, b.dockerfile().as_bytes());
    if let Some(t) = &b.target {
        field(&mut hasher, t.as_bytes());
    }
    for (k, v) in &b.args {
        field(&mut hasher, k.as_bytes());
        field(&mut hasher, v.as_bytes());
    }
    Ok((tar.into_inner()?, format!("{:x}", hasher.finalize())))
}

/// What a context entry is: a regular file (its mode) or a symlink (its target).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Entry {
    File(u32),
    Link(std::path::PathBuf),
}

/// Every regular file and symlink under `dir`, relative; folders walked,
/// not followed through links; sockets, pipes and devices left out.
fn walk(dir: &Path, rel: &str, ignore: &Ignore, out: &mut Vec<(String, Entry)>) -> Result<()> {
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
        if ignore.excludes(&path) {
            continue;
        }
        let meta = std::fs::symlink_metadata(e.path())?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            out.push((path, Entry::Link(std::fs::read_link(e.path())?)));
        } else if kind.is_dir() {
            walk(&e.path(), &path, ignore, out)?;
        } else if kind.is_file() {
            out.push((path, Entry::File(meta.permissions().mode() & 0o7777)));
        }
    }
    Ok(())
}

/// A context's `.dockerignore`: patterns as Docker matches them (`*`, `?`,
/// `**`, a leading `!` to take a path back), the last that matches a path
/// or one of its folders deciding. The Dockerfile and `.dockerignore` are
/// always sent, as Docker sends them.
struct Ignore(Vec<(glob::Pattern, bool)>);

impl Ignore {
    fn read(ctx: &Path) -> Ignore {
        let text = std::fs::read_to_string(ctx.join(".dockerignore")).unwrap_or_default();
        Ignore(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| {
                    let (negate, p) = match l.strip_prefix('!') {
                        Some(p) => (true, p.trim()),
                        None => (false, l),
                    };
                    let p = p.trim_start_matches("./").trim_start_matches('/');
                    let p = p.trim_end_matches('/');
                    Some((glob::Pattern::new(p).ok()?, negate))
                })
                .collect(),
        )
    }

    fn excludes(&self, path: &str) -> bool {
        if path == "Dockerfile" || path == ".dockerignore" {
            return false;
        }
        let opts = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        // A path is out when it or a folder above it is matched last by an exclusion.
        let mut out = false;
        for (p, negate) in &self.0 {
            let mut prefix = String::new();
            let hit = path.split('/').any(|seg| {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(seg);
                p.matches_with(&prefix, opts)
            });
            if hit {
                out = !negate;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_leaves_out_what_docker_leaves_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".dockerignore"),
            "# build junk\n.git\nnode_modules/\n**/*.log\n!keep.log\n",
        )
        .unwrap();
        let i = Ignore::read(dir.path());
        for out in [".git/HEAD", "node_modules/a/b.js", "x/y.log", "a.log"] {
            assert!(i.excludes(out), "{out}");
        }
        for kept in ["src/main.js", "keep.log", "Dockerfile", "logs.txt"] {
            assert!(!i.excludes(kept), "{kept}");
        }
    }

    #[test]
    fn the_digest_tells_contents_apart_from_names() {
        let b = BuildSpec {
            context: ".".into(),
            dockerfile: None,
            target: None,
            args: BTreeMap::new(),
        };
        let digest = |files: &[(&str, &str)]| {
            let dir = tempfile::tempdir().unwrap();
            for (n, t) in files {
                std::fs::write(dir.path().join(n), t).unwrap();
            }
            context_tar(dir.path(), &b).unwrap().1
        };
        assert_ne!(
            digest(&[("a", "hell"), ("ob", "")]),
            digest(&[("a", "hello"), ("b", "")])
        );
    }
}
