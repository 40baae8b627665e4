//! The offline PostgreSQL image: Debian trixie's `postgresql-17` server and
//! `initdb`, `dash` as `/bin/sh` (initdb runs the server through popen), the
//! trixie libraries they link (resolved from DT_NEEDED, not from the host),
//! the share files, a non-root user, and an entrypoint that behaves like the
//! official image's: `POSTGRES_USER`, `POSTGRES_PASSWORD_FILE` and
//! `POSTGRES_DB`, a cluster initialised on first start in
//! `/var/lib/postgresql/data`, and password logins from the network.

use super::debian::Staging;
use super::{check_version, recipe_id, BuildContext, Component, Context3, IMAGE_USER};
use crate::error::{Context, Error, Result};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

const BIN: &str = "usr/lib/postgresql/17/bin";
const LIB: &str = "usr/lib/postgresql/17/lib";
const SHARE: &str = "usr/share/postgresql/17";
/// Where a merged-/usr trixie keeps the dynamic loader; binaries ask for
/// `/lib64/ld-linux-x86-64.so.2`.
const LOADER: (&str, &str) = (
    "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "lib64/ld-linux-x86-64.so.2",
);
const LIBDIR: &str = "usr/lib/x86_64-linux-gnu";

/// The entrypoint, run by dash. A password is required, as in the official
/// image: a database reachable from the network without one is not a
/// stack anyone ships.
const ENTRYPOINT: &str = r#"#!/bin/sh
set -e
PGBIN=/usr/lib/postgresql/17/bin
PGDATA=/var/lib/postgresql/data
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "$POSTGRES_PASSWORD_FILE" ] || [ ! -r "$POSTGRES_PASSWORD_FILE" ]; then
    echo "firedrill postgres: POSTGRES_PASSWORD_FILE must name a readable file" >&2
    exit 1
  fi
  "$PGBIN/initdb" -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" \
    --pwfile="$POSTGRES_PASSWORD_FILE" --auth-local=trust \
    --auth-host=scram-sha-256 -E UTF8 --locale=C
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  # As the official image: the database defaults to the user's name.
  DB="${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"
  if [ "$DB" != postgres ]; then
    echo "CREATE DATABASE \"$DB\"" | "$PGBIN/postgres" --single -D "$PGDATA" postgres >/dev/null
  fi
fi
exec "$PGBIN/postgres" -D "$PGDATA" -c listen_addresses='*' -c jit=off "$@"
"#;

/// The end of the Dockerfile. SIGINT is PostgreSQL's fast shutdown: the
/// default SIGTERM waits for every client (the exporter never leaves) until
/// Docker kills it.
fn dockerfile_tail() -> String {
    format!(
        "ENV TZ=UTC LANG=C PGDATA=/var/lib/postgresql/data\nSTOPSIGNAL SIGINT\nUSER {IMAGE_USER}:{IMAGE_USER}\nENTRYPOINT [\"/bin/sh\", \"/usr/local/bin/docker-entrypoint.sh\"]\n"
    )
}

/// Changes when the entrypoint or the Dockerfile does, so that the image is rebuilt.
pub(super) fn recipe_digest() -> String {
    let mut h = Sha256::new();
    h.update(ENTRYPOINT.as_bytes());
    h.update(dockerfile_tail().as_bytes());
    format!("{:x}", h.finalize())[..8].to_string()
}

/// Builds the context of the PostgreSQL image.
pub(super) fn context(c: &Component) -> Result<Context3> {
    // libllvm is for the JIT module only, which is left out (jit=off).
    let staging = Staging::with_libraries(
        c.name,
        &[c.package, "libpq5", "dash", "tzdata"],
        &["libllvm", "libz3"],
    )?;
    let version = staging.versions[c.package].clone();
    check_version(c, &version)?;
    let mut ctx = BuildContext::new();
    let mut elfs: Vec<PathBuf> = Vec::new();
    for b in ["postgres", "initdb"] {
        let p = staging.path(&format!("{BIN}/{b}"));
        ctx.file_from_host(&p, &format!("{BIN}/{b}"))?;
        elfs.push(p);
    }
    let dash = staging.path("usr/bin/dash");
    ctx.file_from_host(&dash, "bin/sh")?;
    elfs.push(dash);
    // Server modules: plpgsql and the text-search dictionaries are loaded
    // by initdb itself; the rest so that CREATE EXTENSION works.
    for p in sorted_entries(&staging.path(LIB))? {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if name.ends_with(".so") && !name.starts_with("llvmjit") {
            ctx.file_from_host(&p, &format!("{LIB}/{name}"))?;
            elfs.push(p);
        }
    }
    for (soname, file) in staging.needed_libs(&elfs)? {
        ctx.file_from_host(&file, &format!("{LIBDIR}/{soname}"))?;
    }
    ctx.file_from_host(&staging.path(LOADER.0), LOADER.1)?;
    add_tree(&mut ctx, &staging.path(SHARE), SHARE, &["man"])?;
    // UTC only: the server's default and the one zone a drill needs.
    for z in ["UTC", "Etc/UTC"] {
        ctx.file_from_host(
            &staging.path(&format!("usr/share/zoneinfo/{z}")),
            &format!("usr/share/zoneinfo/{z}"),
        )?;
    }
    ctx.file(
        "etc/passwd",
        format!("root:x:0:0:root:/root:/bin/sh\npostgres:x:{IMAGE_USER}:{IMAGE_USER}:PostgreSQL:/var/lib/postgresql:/bin/sh\n").as_bytes(),
        0o644,
    )?;
    ctx.file(
        "etc/group",
        format!("root:x:0:\npostgres:x:{IMAGE_USER}:\n").as_bytes(),
        0o644,
    )?;
    ctx.file(
        "usr/local/bin/docker-entrypoint.sh",
        ENTRYPOINT.as_bytes(),
        0o755,
    )?;
    ctx.dir("tmp")?;
    ctx.owned_dir("var/lib/postgresql", 0o700)?;
    ctx.owned_dir("var/run/postgresql", 0o2775)?;
    let tail = dockerfile_tail();
    let inputs = format!("{}/{}={version}/{}", recipe_id(c), c.package, ctx.digest());
    let _ = std::fs::remove_dir_all(&staging.root);
    Ok((ctx, tail, inputs))
}

/// Adds a folder of the staging root, recursively, but for `skip`.
fn add_tree(
    ctx: &mut BuildContext,
    dir: &std::path::Path,
    into: &str,
    skip: &[&str],
) -> Result<()> {
    for p in sorted_entries(dir)? {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if skip.contains(&name.as_str()) {
            continue;
        }
        let to = format!("{into}/{name}");
        if p.is_dir() {
            add_tree(ctx, &p, &to, &[])?;
        } else {
            let data =
                std::fs::read(&p).context(Error::Image, format!("reading {}", p.display()))?;
            ctx.file(&to, &data, 0o644)?;
        }
    }
    Ok(())
}

/// A folder's entries in name order, so the build context is reproducible.
fn sorted_entries(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .context(Error::Image, format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    v.sort();
    Ok(v)
}
