//! The checks of a stack file that serde cannot make: secrets, container
//! names, resources, coverage waivers, mounts and volumes, each error
//! located in stack.yaml.

use super::*;

/// Each secret takes one source; a Teams mock it names is one.
pub(super) fn check_secrets(
    source: &Source,
    doc: &StackDoc,
    name: &str,
    svc: &ServiceSpec,
    errors: &mut Vec<SpecError>,
) {
    for (i, s) in svc.secrets.iter().enumerate() {
        let at = format!("services.{name}.secrets.{i}");
        if s.path.is_some() == s.var.is_some() {
            errors.push(source.error(
                &at,
                "a secret goes to exactly one of `path` (a file in the container) or `var` (an environment variable)",
            ));
        }
        match (&s.teams_mock, &s.env, &s.generated) {
            (Some(m), None, None) => {
                if doc.services.get(m).map(|s| s.kind) != Some(Kind::TeamsMock) {
                    errors.push(source.error(
                        &format!("{at}.teams_mock"),
                        format!("`{m}` is not a teams-mock service of this stack"),
                    ));
                }
            }
            (None, Some(_), None) | (None, None, Some(_)) => {}
            _ => errors.push(source.error(
                &at,
                "a secret takes exactly one of `teams_mock`, `env` or `generated`",
            )),
        }
    }
}

/// A container name Docker accepts, once in the stack.
pub(super) fn check_container_name(
    source: &Source,
    doc: &StackDoc,
    name: &str,
    svc: &ServiceSpec,
    errors: &mut Vec<SpecError>,
) {
    let Some(c) = &svc.container_name else { return };
    let valid = c.chars().next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.chars()
            .all(|x| x.is_ascii_alphanumeric() || "_.-".contains(x));
    let at = format!("services.{name}.container_name");
    if !valid {
        errors.push(source.error(
            &at,
            "a container name is letters, digits, `_`, `.` and `-`, starting with a letter or digit",
        ));
    }
    let twice = doc
        .services
        .iter()
        .any(|(n, s)| n.as_str() < name && s.container_name.as_ref() == Some(c));
    if twice {
        errors.push(source.error(&at, format!("another service is already named `{c}`")));
    }
}

/// Limits Docker accepts: 6 MiB of memory at least (its floor), a CPU
/// limit above zero.
pub(super) fn check_resources(
    source: &Source,
    name: &str,
    svc: &ServiceSpec,
    errors: &mut Vec<SpecError>,
) {
    if let Some(m) = svc.mem_limit {
        if m.0 < 6 << 20 {
            errors.push(source.error(
                &format!("services.{name}.mem_limit"),
                "Docker's smallest memory limit is 6MiB",
            ));
        }
    }
    if let Some(c) = svc.cpus {
        if !(c > 0.0 && c.is_finite()) {
            errors.push(source.error(
                &format!("services.{name}.cpus"),
                "a CPU limit is a number of cores above 0 (`0.5`)",
            ));
        }
    }
}

/// A coverage waiver names an alerting rule of the stack.
pub(super) fn check_waivers(
    source: &Source,
    doc: &StackDoc,
    p: &Prometheus,
    errors: &mut Vec<SpecError>,
) {
    let names: Vec<String> = p.alert_rules().into_iter().map(|r| r.name).collect();
    for (i, w) in doc.coverage.waive.iter().enumerate() {
        if names.contains(&w.alert) {
            continue;
        }
        let mut e = source.error(
            &format!("coverage.waive.{i}.alert"),
            format!("no alerting rule is named `{}`", w.alert),
        );
        if let Some(near) = crate::util::closest(&w.alert, names.iter().map(String::as_str)) {
            e = e.with_help(format!("did you mean `{near}`?"));
        }
        errors.push(e);
    }
}

/// Each mount parses and names a volume the stack declares.
pub(super) fn check_mounts(
    source: &Source,
    doc: &StackDoc,
    name: &str,
    svc: &ServiceSpec,
    errors: &mut Vec<SpecError>,
) {
    for (i, v) in svc.volumes.iter().enumerate() {
        let at = format!("services.{name}.volumes.{i}");
        match Mount::parse(v) {
            Err(m) => errors.push(source.error(&at, m)),
            Ok(m) if !doc.volumes.contains_key(&m.volume) => {
                let mut e = source.error(
                    &at,
                    format!("no volume `{}` in the stack's `volumes`", m.volume),
                );
                if let Some(near) =
                    crate::util::closest(&m.volume, doc.volumes.keys().map(String::as_str))
                {
                    e = e.with_help(format!("did you mean `{near}`?"));
                }
                errors.push(e);
            }
            Ok(_) => {}
        }
    }
}

/// Every volume the stack declares is one firedrill makes.
pub(super) fn check_volumes(source: &Source, doc: &StackDoc, errors: &mut Vec<SpecError>) {
    for (name, v) in &doc.volumes {
        if let Err(m) = check_volume(v) {
            errors.push(source.error(&format!("volumes.{name}.driver_opts"), m));
        }
    }
}

/// A volume on disk, or a tmpfs of [`MAX_TMPFS_VOLUME`] at most with the
/// options tmpfs knows.
fn check_volume(v: &VolumeSpec) -> Result<(), String> {
    if v.driver_opts.is_empty() {
        return Ok(());
    }
    let opt = |k: &str| v.driver_opts.get(k).map(String::as_str);
    if opt("type") != Some("tmpfs") || opt("device") != Some("tmpfs") {
        return Err("firedrill's volumes are on disk (no `driver_opts`) or tmpfs (`type: tmpfs, device: tmpfs`): no other kind, no path of this machine".into());
    }
    if let Some(k) = v
        .driver_opts
        .keys()
        .find(|k| !["type", "device", "o"].contains(&k.as_str()))
    {
        return Err(format!(
            "`{k}` is not a tmpfs volume option (`type`, `device`, `o`)"
        ));
    }
    let mut size = None;
    for o in opt("o").unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        let (k, val) = o.split_once('=').unwrap_or((o, ""));
        match k {
            "size" => size = Some(tmpfs_size(val)?),
            "nr_inodes" => {
                tmpfs_size(val)?;
            }
            "mode" | "uid" | "gid" => {}
            _ => {
                return Err(format!(
                "`{k}` is not a tmpfs option firedrill passes (size, nr_inodes, mode, uid, gid)"
            ))
            }
        }
    }
    match size {
        Some(s) if s > 0 && s <= MAX_TMPFS_VOLUME => Ok(()),
        Some(_) => {
            Err("a tmpfs volume's size is above 0 and at most 1g (it is held in memory)".into())
        }
        None => Err("a tmpfs volume needs a size (`o: size=64m`): it is held in memory".into()),
    }
}

/// A tmpfs size or count as mount(8) writes it: a number with k, m or g.
fn tmpfs_size(v: &str) -> Result<u64, String> {
    let (num, mult) = match v.char_indices().last() {
        Some((i, 'k' | 'K')) => (&v[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&v[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>()
        .map(|n| n.saturating_mul(mult))
        .map_err(|_| format!("`{v}` is not a tmpfs size (`64m`, `4096`, `1g`)"))
}
