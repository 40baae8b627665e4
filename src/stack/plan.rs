//! What each service of a stack runs: its component's row, the files it
//! reads rendered for this stack, its settings and secrets, as a tar body.

use super::*;
use crate::spec::stack::Restart;
use bollard::models::{RestartPolicy, RestartPolicyNameEnum};

pub(super) fn free_port() -> Result<u16> {
    // A fixed host port survives stop/start (a random one would change).
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Files as a tar body, owned by `owner` (the image's user must read its secrets).
pub(super) fn tar_files(files: &[(String, Vec<u8>, u32)], owner: u32) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_uid(owner.into());
        h.set_gid(owner.into());
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path.trim_start_matches('/'), data.as_slice())?;
    }
    Ok(b.into_inner()?)
}

/// The file at `p` as `into`, or a folder's every file under `into`, modes kept.
pub(super) fn tar_path(
    p: &std::path::Path,
    into: &str,
    out: &mut Vec<(String, Vec<u8>, u32)>,
) -> Result<()> {
    if !p.is_dir() {
        let data = std::fs::read(p).context(Error::Stack, format!("reading {}", p.display()))?;
        out.push((into.to_string(), data, mode_of(p)));
        return Ok(());
    }
    for e in std::fs::read_dir(p).context(Error::Stack, format!("reading {}", p.display()))? {
        let p = e?.path();
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        tar_path(&p, &format!("{into}/{name}"), out)?;
    }
    Ok(())
}

/// A file's permission bits as they are (a script keeps its execute bit).
fn mode_of(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map_or(0o644, |m| m.permissions().mode() & 0o7777)
}

/// What a service needs to start: command, files, readiness.
pub(super) struct Plan {
    pub(super) image: String,
    pub(super) cmd: Vec<String>,
    pub(super) env: Vec<String>,
    pub(super) files: Vec<(String, Vec<u8>, u32)>,
    /// The uid that owns the files copied in (the image's user).
    pub(super) owner: u32,
    pub(super) binds: Vec<String>,
    /// Paths on tmpfs: emptied whenever the container stops, so a restart
    /// starts the service over with no state (a shared stack's reset).
    pub(super) tmpfs: Vec<&'static str>,
    pub(super) ready: Ready,
    /// Why firedrill's stand-in plays the component, when it does.
    pub(super) stand_in: Option<String>,
    /// Memory, CPU and restart policy from the stack file.
    pub(super) resources: crate::spec::stack::Resources,
    /// The kind that runs: the service's, or `Fixture` where its profile
    /// plays a GPU component on a machine with no GPU.
    pub(super) kind: Kind,
    /// Docker's healthcheck of a `container` service.
    pub(super) healthcheck: Option<crate::spec::stack::Healthcheck>,
}

/// A service's plan, or why it cannot run here (an optional image absent).
pub(super) enum Planned {
    Run(Box<Plan>),
    Skipped(String),
}

/// What the service `name` runs: its component's row (image, command line,
/// readiness, state, binds), the files it reads rendered for this stack, the
/// stack file's `env` and `args`, and its secrets.
pub(super) fn plan(
    name: &str,
    stack: &Stack,
    eff: &Effective,
    images: &Images,
    port: u16,
    token: &str,
    generated: &BTreeMap<String, String>,
) -> Result<Planned> {
    let svc = &stack.doc.services[name];
    if svc.kind == Kind::Container {
        return container(name, stack, images, token, generated);
    }
    let (kind, image, stand_in) = match images.for_kind(svc.kind)? {
        Optional::Present(i) => (svc.kind, i, None),
        Optional::Skipped(why) => return Ok(Planned::Skipped(why)),
        Optional::StandIn(i, why) => (
            svc.kind,
            i,
            Some(format!("firedrill's stand-in, since {why}")),
        ),
        // A GPU component on a machine with none: its fixture profile plays it.
        Optional::NoGpu(why) => match stack.fixtures.get(name) {
            Some(profile) => (
                Kind::Fixture,
                images.firedrill.clone(),
                Some(format!(
                    "the `{}` fixture plays it (the same names and labels, values set by chaos), since {why}",
                    profile.name
                )),
            ),
            None => return Ok(Planned::Skipped(format!("{why}, and it has no fixture `profile` to play it"))),
        },
    };
    let c = components::of(kind);
    let (argv, binds, ready) = match (c.image, &stand_in) {
        (components::Image::OrStandIn(_, s), Some(_)) => (s.argv, s.binds, s.ready),
        _ => (c.argv, c.binds, c.ready),
    };
    let binds = binds
        .iter()
        .map(|b| match b.strip_prefix(components::DOCKER_SOCKET) {
            Some(rest) => components::docker_socket()
                .map(|sock| format!("{sock}{rest}"))
                .ok_or_else(|| {
                    err!(
                        Stack,
                        "{name}: firedrill's stand-in reads the Docker API through a unix socket; DOCKER_HOST names none"
                    )
                }),
            None => Ok(b.to_string()),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut p = Plan {
        image,
        cmd: argv(port),
        env: vec![],
        files: vec![],
        owner: c.owner,
        binds,
        tmpfs: c.state.to_vec(),
        ready,
        stand_in,
        resources: svc.resources(),
        kind,
        healthcheck: None,
    };
    if svc.kind == Kind::NodeExporter {
        p.stand_in = synthetic_host(stack, svc);
    }
    own_files(&mut p, name, stack, eff, port, token)?;
    p.env
        .extend(svc.env.iter().map(|(k, v)| format!("{k}={v}")));
    p.cmd.extend(svc.args.iter().cloned());
    secrets(svc, stack, token, generated, &mut p.files, &mut p.env)?;
    Ok(Planned::Run(Box::new(p)))
}

/// What a `kind: container` service runs: its own image (pulled or built
/// beforehand), its command, env and files as the stack file gives them,
/// its secrets; ready by its `ready` path, else by Docker's healthcheck
/// (its own or its image's), else once its port accepts.
fn container(
    name: &str,
    stack: &Stack,
    images: &Images,
    token: &str,
    generated: &BTreeMap<String, String>,
) -> Result<Planned> {
    let svc = &stack.doc.services[name];
    let img = images
        .services
        .get(name)
        .ok_or_else(|| err!(Image, "{name}: its image was not made before the bring-up"))?;
    let mut files = Vec::new();
    for (path, from) in &svc.files {
        tar_path(&stack.source.relative(from), path, &mut files)?;
    }
    let mut env: Vec<String> = svc.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut secret_files = Vec::new();
    secrets(svc, stack, token, generated, &mut secret_files, &mut env)?;
    if img.uid.is_none() {
        // A user named by name: its uid is unknown before it runs, so its
        // secret files are readable by every user of the container (the
        // drill's alone), not by root only.
        for f in &mut secret_files {
            f.2 = 0o444;
        }
    }
    files.extend(secret_files);
    let ready = match (&svc.ready, &svc.healthcheck) {
        (Some(path), _) => Ready::Http(interned(path)),
        (None, Some(_)) => Ready::Healthy,
        (None, None) if img.healthcheck => Ready::Healthy,
        (None, None) => Ready::Tcp,
    };
    Ok(Planned::Run(Box::new(Plan {
        image: img.image.clone(),
        cmd: svc.args.clone(),
        env,
        files,
        owner: img.uid.unwrap_or(0),
        binds: vec![],
        tmpfs: vec![],
        ready,
        stand_in: None,
        resources: svc.resources(),
        kind: Kind::Container,
        healthcheck: svc.healthcheck.clone(),
    })))
}

/// A readiness path of a stack file as [`Ready::Http`] holds it: kept for
/// the process's life, once per distinct path (a handful).
fn interned(path: &str) -> &'static str {
    static PATHS: std::sync::LazyLock<std::sync::Mutex<std::collections::BTreeSet<&'static str>>> =
        std::sync::LazyLock::new(Default::default);
    let mut set = PATHS.lock().expect("paths lock");
    if let Some(p) = set.get(path) {
        return p;
    }
    let p: &'static str = Box::leak(path.to_string().into_boxed_str());
    set.insert(p);
    p
}

/// What a node-exporter reads when it is pointed (`--path.procfs`) at the
/// procfs tree of a fixture's synthetic host through a volume they share.
fn synthetic_host(stack: &Stack, node: &crate::spec::stack::ServiceSpec) -> Option<String> {
    let procfs = node
        .args
        .iter()
        .find_map(|a| a.strip_prefix("--path.procfs="))?;
    let volume_at = |s: &crate::spec::stack::ServiceSpec| {
        s.mounts()
            .into_iter()
            .find(|m| m.path == procfs)
            .map(|m| m.volume)
    };
    let shared = volume_at(node)?;
    stack.fixtures.iter().find_map(|(name, p)| {
        let h = p.host.as_ref().filter(|h| h.procfs == procfs)?;
        (volume_at(&stack.doc.services[name])? == shared).then(|| {
            let disk = match &h.disk {
                Some(d) => format!(", a disk {} on {}", d.device, d.path),
                None => String::new(),
            };
            format!(
                "reads the synthetic host that `{name}` plays ({} of memory{disk}, this machine's CPU), not this machine's memory and disks",
                h.memory
            )
        })
    })
}

/// The files (and settings) a service of each kind reads, rendered for
/// this stack.
fn own_files(
    p: &mut Plan,
    name: &str,
    stack: &Stack,
    eff: &Effective,
    port: u16,
    token: &str,
) -> Result<()> {
    let svc = &stack.doc.services[name];
    let files = &mut p.files;
    match p.kind {
        Kind::Prometheus => {
            for (path, text) in &eff.prometheus_files {
                files.push((path.clone(), text.clone().into_bytes(), 0o644));
            }
            p.cmd.push(format!(
                "--rules.alert.resend-delay={}",
                crate::spec::Dur(eff.resend_delay)
            ));
        }
        Kind::Alertmanager => {
            let text = eff
                .alertmanager_file
                .clone()
                .ok_or_else(|| err!(Stack, "alertmanager config not rendered"))?;
            files.push((render::AM_CONFIG.to_string(), text.into_bytes(), 0o644));
        }
        Kind::Fixture => {
            // The profile as loaded: includes merged, variant applied.
            let resolved = serde_yaml_ng::to_string(&stack.fixtures[name])?;
            files.push((
                components::FIXTURE_PROFILE.into(),
                resolved.into_bytes(),
                0o644,
            ));
        }
        Kind::TeamsMock => files.push((
            components::TEAMS_TOKEN.into(),
            token.as_bytes().to_vec(),
            0o600,
        )),
        Kind::Grafana => {
            if let Some(d) = &svc.provisioning {
                tar_path(
                    &stack.source.relative(d),
                    "/etc/grafana/provisioning",
                    files,
                )?;
            }
            if let Some(d) = &svc.dashboards {
                tar_path(
                    &stack.source.relative(d),
                    "/var/lib/grafana/dashboards",
                    files,
                )?;
            }
            let password = format!("{:032x}", rand::random::<u128>());
            p.env = vec![
                format!("GF_SECURITY_ADMIN_PASSWORD={password}"),
                format!("GF_SERVER_HTTP_PORT={port}"),
                "GF_USERS_ALLOW_SIGN_UP=false".into(),
            ];
        }
        Kind::Container
        | Kind::NodeExporter
        | Kind::Cadvisor
        | Kind::DcgmExporter
        | Kind::Postgres
        | Kind::PostgresExporter => {}
    }
    Ok(())
}

/// A service's secrets, written into its container (`files`) or its
/// environment (`env`), never into the user's tree or logs.
fn secrets(
    svc: &crate::spec::stack::ServiceSpec,
    stack: &Stack,
    token: &str,
    generated: &BTreeMap<String, String>,
    files: &mut Vec<(String, Vec<u8>, u32)>,
    env: &mut Vec<String>,
) -> Result<()> {
    for s in &svc.secrets {
        let to = s.path.as_deref().or(s.var.as_deref()).unwrap_or_default();
        let value = match (&s.teams_mock, &s.env, &s.generated) {
            (Some(mock), _, _) => {
                let mport = stack.port(mock);
                format!("http://{mock}:{mport}/webhook/{token}")
            }
            (None, Some(var), _) => std::env::var(var).map_err(|_| {
                err!(
                    Stack,
                    "secret for {to}: environment variable {var} is not set"
                )
            })?,
            (None, None, Some(g)) => generated[g].clone(),
            _ => unreachable!("validated in spec"),
        };
        match (&s.path, &s.var) {
            (Some(path), _) => files.push((path.clone(), value.into_bytes(), 0o600)),
            (None, Some(var)) => env.push(format!("{var}={value}")),
            (None, None) => unreachable!("validated in spec"),
        }
    }
    Ok(())
}

/// The container's settings: the plan's image, command line and
/// environment, `port` published on 127.0.0.1:`host_port`, the run's
/// labels, and `name` as its alias on the run's `network`.
pub(super) fn container_config(
    p: Plan,
    name: &str,
    network: &str,
    labels: &HashMap<String, String>,
    port: u16,
    host_port: u16,
) -> Config<String> {
    let port_key = format!("{port}/tcp");
    let binding = PortBinding {
        host_ip: Some("127.0.0.1".into()),
        host_port: Some(host_port.to_string()),
    };
    let tmpfs: HashMap<String, String> = p
        .tmpfs
        .iter()
        .map(|t| (t.to_string(), "mode=1777".to_string()))
        .collect();
    let r = p.resources;
    let restart = RestartPolicy {
        name: Some(match r.restart {
            Restart::No => RestartPolicyNameEnum::NO,
            Restart::Always => RestartPolicyNameEnum::ALWAYS,
            Restart::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
            Restart::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        }),
        maximum_retry_count: None,
    };
    let ns = |d: Option<crate::spec::Dur>| d.map(|d| d.0.as_nanos() as i64);
    let healthcheck = p.healthcheck.map(|h| bollard::models::HealthConfig {
        test: Some(h.docker_test()),
        interval: ns(h.interval),
        timeout: ns(h.timeout),
        retries: h.retries.map(i64::from),
        start_period: ns(h.start_period),
        ..Default::default()
    });
    Config {
        image: Some(p.image),
        healthcheck,
        cmd: (!p.cmd.is_empty()).then_some(p.cmd),
        env: Some(p.env),
        labels: Some(labels.clone()),
        exposed_ports: Some([(port_key.clone(), HashMap::new())].into()),
        host_config: Some(HostConfig {
            network_mode: Some(network.to_string()),
            port_bindings: Some([(port_key, Some(vec![binding]))].into()),
            binds: (!p.binds.is_empty()).then_some(p.binds),
            tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
            memory: r.mem_limit.map(|m| m.0 as i64),
            // No swap beyond the limit: the kernel OOM-kills at it.
            memory_swap: r.mem_limit.map(|m| m.0 as i64),
            nano_cpus: r.cpus.map(|c| (c * 1e9).round() as i64),
            restart_policy: Some(restart),
            // Every GPU, as `--gpus all` asks (the NVIDIA Container Toolkit).
            device_requests: components::of(p.kind).gpu.then(|| {
                vec![bollard::models::DeviceRequest {
                    driver: Some("nvidia".into()),
                    count: Some(-1),
                    capabilities: Some(vec![vec!["gpu".into(), "utility".into()]]),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        networking_config: Some(bollard::container::NetworkingConfig {
            endpoints_config: [(
                network.to_string(),
                EndpointSettings {
                    aliases: Some(vec![name.to_string()]),
                    ..Default::default()
                },
            )]
            .into(),
        }),
        ..Default::default()
    }
}
