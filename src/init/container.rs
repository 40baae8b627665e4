//! A Compose service of the team's own, run as it is (`init --compose
//! --containers`): its image or build context, command, environment (each
//! secret-named variable a secret read from the environment at drill time,
//! never copied), port, healthcheck, the config files it binds (copied in),
//! limits and restart policy, as a `kind: container` service's lines.

use super::compose::Project;
use super::drills::q;
use crate::lint::secrets::is_secret_var;
use docker_compose_types as dc;
use std::path::Path;

/// The lines of `svc` as a `kind: container` service, and what of it was
/// not carried; `Err` says why it cannot run as a container.
pub(super) fn lines(
    project: &Project,
    svc: &dc::Service,
    port: Option<u16>,
    rel: &dyn Fn(&Path) -> String,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut l = vec!["kind: container".to_string()];
    let mut left = Vec::new();
    match (&svc.build_, &svc.image) {
        (Some(b), _) => build(project, b, rel, &mut l, &mut left)?,
        (None, Some(i)) => l.push(format!("image: {}", q(i))),
        (None, None) => return Err("it has neither `image` nor `build`".into()),
    }
    let port = port
        .or_else(|| {
            svc.expose
                .first()
                .and_then(|p| p.split('/').next()?.parse().ok())
        })
        .or_else(|| first_port(&svc.ports))
        .ok_or("no port: no scrape job, `expose` or `ports` says where it listens")?;
    l.push(format!("port: {port}"));
    let cmd = Project::command(svc);
    if !cmd.is_empty() {
        l.push(format!(
            "command: [{}]",
            cmd.iter().map(|a| q(a)).collect::<Vec<_>>().join(", ")
        ));
    }
    if svc.entrypoint.is_some() {
        left.push("its `entrypoint` (the image's own runs)".to_string());
    }
    if svc.user.is_some() {
        left.push("its `user` (the image's own runs)".to_string());
    }
    if svc.secrets.is_some() {
        left.push("its Compose secrets (give each as a stack secret: `{path: /run/secrets/NAME, env: VAR}`)".to_string());
    }
    environment(project, svc, &mut l);
    files(project, svc, rel, &mut l, &mut left);
    if let Some(h) = &svc.healthcheck {
        healthcheck(h, &mut l);
    }
    Ok((l, left))
}

/// `build:` with its context relative to stack.yaml.
fn build(
    project: &Project,
    b: &dc::BuildStep,
    rel: &dyn Fn(&Path) -> String,
    l: &mut Vec<String>,
    left: &mut Vec<String>,
) -> Result<(), String> {
    let (context, dockerfile, target, args) = match b {
        dc::BuildStep::Simple(c) => (c.clone(), None, None, vec![]),
        dc::BuildStep::Advanced(a) => {
            if a.dockerfile_inline.is_some() {
                return Err(
                    "its build has a `dockerfile_inline`, which firedrill does not build".into(),
                );
            }
            let args = build_args(a.args.as_ref());
            (
                a.context.clone(),
                a.dockerfile.clone(),
                a.target.clone(),
                args,
            )
        }
    };
    // A build argument that holds a secret is not written in clear.
    let (secret, args): (Vec<_>, Vec<_>) = args
        .into_iter()
        .partition(|(k, v)| is_secret_var(k, Some(v)));
    for (k, _) in secret {
        left.push(format!("its build argument {k} (a secret: give it in the stack by hand, from your CI's secret store)"));
    }
    l.push("build:".into());
    l.push(format!("  context: {}", rel(&project.dir.join(&context))));
    if let Some(d) = dockerfile {
        l.push(format!("  dockerfile: {}", q(&d)));
    }
    if let Some(t) = target {
        l.push(format!("  target: {}", q(&t)));
    }
    if !args.is_empty() {
        let mut args = args;
        args.sort();
        l.push("  args:".into());
        l.extend(args.iter().map(|(k, v)| format!("    {}: {}", q(k), q(v))));
    }
    Ok(())
}

/// The first container port `ports` publishes (`8080:80` → 80).
fn first_port(ports: &dc::Ports) -> Option<u16> {
    match ports {
        dc::Ports::Short(v) => v.iter().find_map(|p| {
            let p = p.split('/').next()?;
            p.rsplit(':').next()?.split('-').next()?.parse().ok()
        }),
        dc::Ports::Long(v) => v.first().map(|p| p.target),
    }
}

/// `env:` for its plain variables; each secret one (a password or token by
/// its name, a URL with a password) a secret read at drill time from the
/// variable of the same name on the machine that runs the drill.
fn environment(project: &Project, svc: &dc::Service, l: &mut Vec<String>) {
    let names = project.env_names(svc);
    let values: Vec<(&String, Option<String>)> = names
        .iter()
        .map(|n| (n, project.env_value(svc, n)))
        .collect();
    let (secret, plain): (Vec<_>, Vec<_>) = values
        .into_iter()
        .partition(|(n, v)| is_secret_var(n, v.as_deref()));
    let secret: Vec<&String> = secret.into_iter().map(|(n, _)| n).collect();
    let plain: Vec<(String, String)> = plain
        .into_iter()
        .filter_map(|(n, v)| Some((n.clone(), v?)))
        .collect();
    if !plain.is_empty() {
        l.push("env:".into());
        l.extend(plain.iter().map(|(k, v)| format!("  {}: {}", q(k), q(v))));
    }
    if !secret.is_empty() {
        l.push("secrets:".into());
        for n in secret {
            l.push(format!("  - {{var: {}, env: {}}}", q(n), q(n)));
        }
    }
}

/// `files:` for each file or folder of the project it binds (copied in,
/// unchanged); a bind of anything else (the Docker socket, `/`, a home
/// folder, a path that does not exist) and its named volumes are said, not
/// carried.
fn files(
    project: &Project,
    svc: &dc::Service,
    rel: &dyn Fn(&Path) -> String,
    l: &mut Vec<String>,
    left: &mut Vec<String>,
) {
    let root = project
        .dir
        .canonicalize()
        .unwrap_or_else(|_| project.dir.clone());
    let mut binds = project.binds(svc);
    let named = svc.volumes.len() - binds.len();
    if named > 0 {
        left.push(format!("{named} volume(s) not bound from the project (named volumes, tmpfs): it starts with them empty"));
    }
    binds.retain(|b| {
        let ok = b.host.starts_with(&root) && (b.host.is_file() || b.host.is_dir());
        if !ok {
            left.push(format!(
                "its bind of {} (not a file of the project)",
                b.host.display()
            ));
        }
        ok
    });
    if binds.is_empty() {
        return;
    }
    l.push("files:".into());
    for b in binds {
        l.push(format!("  {}: {}", q(&b.container), rel(&b.host)));
    }
}

/// `healthcheck:` as Compose wrote it.
fn healthcheck(h: &dc::Healthcheck, l: &mut Vec<String>) {
    let test = match &h.test {
        Some(dc::HealthcheckTest::Single(s)) => q(s),
        Some(dc::HealthcheckTest::Multiple(v)) => {
            format!(
                "[{}]",
                v.iter().map(|a| q(a)).collect::<Vec<_>>().join(", ")
            )
        }
        None => return,
    };
    if h.disable || test.contains("\"NONE\"") {
        return;
    }
    l.push("healthcheck:".into());
    l.push(format!("  test: {test}"));
    for (k, v) in [
        ("interval", &h.interval),
        ("timeout", &h.timeout),
        ("start_period", &h.start_period),
    ] {
        if let Some(v) = v {
            l.push(format!("  {k}: {}", q(v)));
        }
    }
    if h.retries > 0 {
        l.push(format!("  retries: {}", h.retries));
    }
}

/// Compose's build arguments in any of its forms, as (name, value).
fn build_args(args: Option<&dc::BuildArgs>) -> Vec<(String, String)> {
    match args {
        Some(dc::BuildArgs::KvPair(m)) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(dc::BuildArgs::List(v)) => v
            .iter()
            .filter_map(|e| {
                e.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect(),
        Some(dc::BuildArgs::Simple(e)) => e
            .split_once('=')
            .map(|(k, v)| vec![(k.to_string(), v.to_string())])
            .unwrap_or_default(),
        None => vec![],
    }
}
