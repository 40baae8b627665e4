//! Debian packages as image inputs: the machine's own mirror, a private apt
//! state for trixie (the system's sources, lists and cache untouched),
//! downloads with their library dependencies, and the shared libraries an
//! ELF binary needs, resolved inside the unpacked packages rather than on
//! the host (a trixie binary needs trixie's libc, not the host's).

use crate::error::{bail, err, Context, Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

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
    bail!(
        Image,
        "no Debian mirror found in /etc/apt (set FIREDRILL_DEBIAN_MIRROR)"
    )
}

pub(super) fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .context(Error::Image, format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            Image,
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// apt-get and apt-cache with a private state for Debian trixie.
struct Apt {
    dir: PathBuf,
    list: PathBuf,
}

impl Apt {
    /// Creates the private state, and fetches the package lists once.
    fn new() -> Result<Apt> {
        let dir = cache_dir().join("apt");
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
        let apt = Apt { dir, list };
        let fresh = apt
            .dir
            .join("lists")
            .read_dir()
            .map(|d| d.count() > 2)
            .unwrap_or(false);
        if !fresh {
            run(apt.cmd("apt-get").args(["-q", "update"]))?;
        }
        Ok(apt)
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for (k, v) in [
            ("Dir::Etc::SourceList", self.list.display().to_string()),
            ("Dir::Etc::SourceParts", "/dev/null".into()),
            ("Dir::Etc::Preferences", "/dev/null".into()),
            (
                "Dir::Etc::PreferencesParts",
                self.dir.join("prefs").display().to_string(),
            ),
            (
                "Dir::State::Lists",
                self.dir.join("lists").display().to_string(),
            ),
            ("Dir::Cache", self.dir.join("cache").display().to_string()),
            ("APT::Architecture", "amd64".into()),
            ("APT::Sandbox::User", "root".into()),
        ] {
            c.arg("-o").arg(format!("{k}={v}"));
        }
        c
    }

    /// Downloads packages into the cache (kept between runs); returns each
    /// package's newest .deb.
    fn download(&self, packages: &[String]) -> Result<Vec<PathBuf>> {
        let debs = self.dir.join("debs");
        run(self
            .cmd("apt-get")
            .current_dir(&debs)
            .args(["-q", "download"])
            .args(packages))?;
        let files: Vec<PathBuf> = std::fs::read_dir(&debs)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        packages
            .iter()
            .map(|package| {
                let prefix = format!("{package}_");
                files
                    .iter()
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
                    })
                    .max()
                    .cloned()
                    .ok_or_else(|| err!(Image, "apt-get download {package} produced no .deb"))
            })
            .collect()
    }

    /// The library packages (`lib*`, `zlib1g`) that `roots` depend on,
    /// recursively; `exclude` prunes packages by name prefix (LLVM for the
    /// JIT, Perl modules) that no shipped binary links.
    fn library_closure(&self, roots: &[&str], exclude: &[&str]) -> Result<Vec<String>> {
        let out = run(self
            .cmd("apt-cache")
            .args([
                "depends",
                "--recurse",
                "--no-recommends",
                "--no-suggests",
                "--no-conflicts",
                "--no-breaks",
                "--no-replaces",
                "--no-enhances",
            ])
            .args(roots))?;
        let names: BTreeSet<String> = out
            .lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('<'))
            .map(str::trim)
            .filter(|n| n.starts_with("lib") || *n == "zlib1g")
            .filter(|n| !n.ends_with("-perl") && !exclude.iter().any(|x| n.starts_with(x)))
            .map(String::from)
            .collect();
        Ok(names.into_iter().collect())
    }
}

/// The upstream version of a downloaded .deb (`1:2.3-4` gives `2.3-4`).
fn deb_version(deb: &Path) -> String {
    let fname = deb.file_name().unwrap_or_default().to_string_lossy();
    let version = fname.split('_').nth(1).unwrap_or("");
    version
        .split_once("%3a")
        .or_else(|| version.split_once(':'))
        .map(|(_, v)| v)
        .unwrap_or(version)
        .to_string()
}

/// Packages unpacked into one folder: a trixie root to pick files from.
pub(super) struct Staging {
    pub root: PathBuf,
    /// package -> version, for the image's inputs label.
    pub versions: BTreeMap<String, String>,
}

impl Staging {
    /// Downloads `roots` and the library packages they depend on, and
    /// unpacks them all (no maintainer scripts run).
    pub fn with_libraries(name: &str, roots: &[&str], exclude: &[&str]) -> Result<Staging> {
        let apt = Apt::new()?;
        let mut packages: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
        for lib in apt.library_closure(roots, exclude)? {
            if !packages.contains(&lib) {
                packages.push(lib);
            }
        }
        Staging::unpack(&apt, name, &packages)
    }

    /// Downloads and unpacks one package alone (a Go binary links only libc).
    pub fn single(name: &str, package: &str) -> Result<Staging> {
        Staging::unpack(&Apt::new()?, name, &[package.to_string()])
    }

    fn unpack(apt: &Apt, name: &str, packages: &[String]) -> Result<Staging> {
        let debs = apt.download(packages)?;
        let root = cache_dir().join("unpack").join(name);
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root)?;
        let mut versions = BTreeMap::new();
        for (package, deb) in packages.iter().zip(&debs) {
            run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root))?;
            versions.insert(package.clone(), deb_version(deb));
        }
        Ok(Staging { root, versions })
    }

    pub fn path(&self, in_root: &str) -> PathBuf {
        self.root.join(in_root.trim_start_matches('/'))
    }

    /// The shared libraries the given ELF files need, transitively, as
    /// (soname, file in the staging root). A soname found nowhere is an error
    /// naming it and who needs it.
    pub fn needed_libs(&self, elfs: &[PathBuf]) -> Result<BTreeMap<String, PathBuf>> {
        const DIRS: [&str; 2] = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu"];
        let mut found = BTreeMap::new();
        let mut queue: Vec<(PathBuf, String)> = elfs
            .iter()
            .map(|p| (p.clone(), p.display().to_string()))
            .collect();
        while let Some((elf, who)) = queue.pop() {
            for soname in elf_needed(&elf)? {
                if found.contains_key(&soname) {
                    continue;
                }
                let file = DIRS
                    .iter()
                    .map(|d| self.root.join(d).join(&soname))
                    .find(|p| p.exists())
                    .ok_or_else(|| {
                        err!(
                            Image,
                            "{soname}, needed by {who}, is in none of the unpacked packages"
                        )
                    })?;
                queue.push((file.clone(), soname.clone()));
                found.insert(soname, file);
            }
        }
        Ok(found)
    }
}

/// The DT_NEEDED entries of an ELF file.
fn elf_needed(path: &Path) -> Result<Vec<String>> {
    use object::Object;
    let data = std::fs::read(path).context(Error::Image, format!("reading {}", path.display()))?;
    let file = object::File::parse(&*data).context(
        Error::Image,
        format!("{} is not an ELF file", path.display()),
    )?;
    let mut out = Vec::new();
    for lib in file
        .import_libraries()
        .context(Error::Image, path.display())?
    {
        out.push(
            String::from_utf8_lossy(lib.context(Error::Image, path.display())?.name()).into_owned(),
        );
    }
    if out.is_empty() && file.format() != object::BinaryFormat::Elf {
        bail!(Image, "{} is not an ELF file", path.display());
    }
    Ok(out)
}

/// The shared libraries a dynamic binary needs, as absolute host paths.
pub(super) fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>> {
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
