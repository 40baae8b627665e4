//! What each kind of component is, in one table ([`TABLE`], read through
//! [`of`]): its default port, where its image comes from (an official image
//! pinned by version with its offline recipe from Debian packages, the
//! project's own image, an optional image with no offline source, or an
//! official image with firedrill's stand-in for when it is absent), its
//! command line, how to tell it is ready, where its state lives, how a
//! shared stack resets it, and the catalogue of metrics it exposes. Adding a
//! component is a row here and, where it reads files of its own, their
//! rendering in `stack::plan`.

use serde::Deserialize;

/// The kinds of service a stack file can name.
#[derive(
    Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Prometheus: scrapes, evaluates the rules, sends alerts.
    Prometheus,
    /// Alertmanager: routes alerts to receivers (the Teams mock).
    Alertmanager,
    /// Prometheus' node_exporter: the host's metrics.
    NodeExporter,
    /// A synthetic service from a fixture profile (firedrill's own image).
    Fixture,
    /// The Microsoft Teams webhook mock (firedrill's own image).
    TeamsMock,
    /// Grafana: optional, only from its official image.
    Grafana,
    /// cAdvisor: optional, only from its official image.
    Cadvisor,
    /// NVIDIA's dcgm-exporter: the official image where the machine can
    /// give containers its GPUs, else firedrill's NVML stand-in; where it
    /// has none, the service's `profile` (a fixture) plays it.
    DcgmExporter,
    /// PostgreSQL (seed 002), from Debian's postgresql-17 offline.
    Postgres,
    /// prometheus-community's postgres_exporter.
    PostgresExporter,
    /// Any image the engine has, can pull, or builds from the service's
    /// `build` context: a team's own service, run as it is.
    Container,
}

/// One kind of component.
#[derive(Debug, Clone, Copy)]
pub struct Component {
    /// Its kind in stack files.
    pub kind: Kind,
    /// Its name in image listings and messages.
    pub name: &'static str,
    /// The port it listens on unless the stack file says otherwise.
    pub port: u16,
    /// Where its image comes from.
    pub image: Image,
    /// Its command line, listening on `port` (the stack file's `args` follow).
    pub argv: fn(port: u16) -> Vec<String>,
    /// How to tell it is ready.
    pub ready: Ready,
    /// Where it keeps state, on tmpfs: emptied whenever the container
    /// stops, so a restart starts the service over (a shared stack's reset).
    pub state: &'static [&'static str],
    /// Host paths it reads, bound read-only (`host:container:ro`).
    pub binds: &'static [&'static str],
    /// The uid that owns the files copied into it (its image's user).
    pub owner: u32,
    /// How a shared stack's reset starts it over between drills.
    pub reset: Reset,
    /// The metric names it exposes, for static checks.
    pub catalogue: Catalogue,
    /// It reads the machine's GPUs: its container is given every GPU, and
    /// where the machine can give none, its service's fixture profile
    /// plays it (or it is skipped).
    pub gpu: bool,
}

/// Where a component's image comes from.
#[derive(Debug, Clone, Copy)]
pub enum Image {
    /// An official image, pinned, or the same version built offline.
    Pinned(Offline),
    /// The project's own image: the firedrill binary.
    Firedrill,
    /// An official image with no offline source: used when present or
    /// pullable, else the service is skipped with the reason.
    Optional(&'static str),
    /// An official image used when present or pullable, else firedrill's
    /// own stand-in, which exposes the same names, labels and semantics.
    OrStandIn(&'static str, StandIn),
    /// The service's own: its `image`, or one built from its `build`
    /// context (`kind: container`).
    Service,
}

/// How firedrill's own image plays a component whose official image is absent.
#[derive(Debug, Clone, Copy)]
pub struct StandIn {
    /// Its command line, listening on `port`.
    pub argv: fn(port: u16) -> Vec<String>,
    /// Host paths it reads (`host:container`); `DOCKER_SOCKET` is the
    /// engine's socket, wherever `DOCKER_HOST` puts it.
    pub binds: &'static [&'static str],
    /// How to tell it is ready.
    pub ready: Ready,
}

/// In [`StandIn::binds`], the host's Docker socket.
pub const DOCKER_SOCKET: &str = "$DOCKER_SOCKET";

/// The host path of the engine's unix socket: `DOCKER_HOST` when it names
/// one, else the default; `None` when the engine is reached over TCP.
pub fn docker_socket() -> Option<String> {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h.strip_prefix("unix://").map(str::to_string),
        _ => Some("/var/run/docker.sock".into()),
    }
}

/// An official image and how to build the same version offline.
#[derive(Debug, Clone, Copy)]
pub struct Offline {
    /// The official image, pinned.
    pub registry: &'static str,
    /// Debian trixie package and the upstream version prefix it must have.
    pub package: &'static str,
    /// The upstream version the package must have (`2.53.`).
    pub version_prefix: &'static str,
    /// How the offline image is put together.
    pub recipe: Recipe,
}

/// How a component's offline image is put together.
#[derive(Debug, Clone, Copy)]
pub enum Recipe {
    /// A Go binary: the binary, the host's libc it links, its data files.
    Binary {
        /// (path in the package, path in the image)
        binary: (&'static str, &'static str),
        /// Data files: (path in the package, path in the image).
        data: &'static [(&'static str, &'static str)],
        /// Empty folders the component writes to.
        dirs: &'static [&'static str],
    },
    /// PostgreSQL: server, initdb, a shell, their trixie libraries.
    Postgres,
}

/// How to tell that a service is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// An HTTP GET of this path answers 2xx.
    Http(&'static str),
    /// The port accepts a TCP connection (PostgreSQL opens it once
    /// initialised and recovered).
    Tcp,
    /// Docker's healthcheck of the container (the image's `HEALTHCHECK` or
    /// the service's `healthcheck`) reports it healthy.
    Healthy,
}

/// How a shared stack's reset starts a component over between drills
/// (every stopped or paused container is started again first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// Prometheus: its rules unloaded and loaded again (no alert state
    /// survives), every sample deleted.
    ReloadAndDelete,
    /// Alertmanager: restarted, empty (its state is on tmpfs).
    Restart,
    /// A fixture or the Teams mock: `POST /-/reset`, in its own process.
    InProcess,
    /// Nothing of a drill stays in it.
    Stateless,
}

/// The metric names a component exposes, for static checks.
#[derive(Debug, Clone, Copy)]
pub enum Catalogue {
    /// Those of its fixture profile.
    Profile,
    /// A catalogue shipped with firedrill (YAML, `fixtures/catalogs/`).
    Static(&'static str),
    /// None known without running it.
    Unknown,
    /// It speaks no Prometheus exposition on its port (a database's wire
    /// protocol): what it speaks, for the lint that finds it scraped.
    NoExposition(&'static str),
}

fn listen(port: u16) -> String {
    format!("--web.listen-address=:{port}")
}

/// What most rows have: no state, no binds, files owned by root, nothing
/// to reset, no static catalogue. (Its kind, name, port, image, argv and
/// readiness are placeholders: every row gives its own.)
const PLAIN: Component = Component {
    kind: Kind::NodeExporter,
    name: "",
    port: 0,
    image: Image::Firedrill,
    argv: |_| vec![],
    ready: Ready::Tcp,
    state: &[],
    binds: &[],
    owner: 0,
    reset: Reset::Stateless,
    catalogue: Catalogue::Unknown,
    gpu: false,
};

/// Every kind of component, one row each.
pub const TABLE: [Component; 11] = [
    Component {
        kind: Kind::Prometheus,
        name: "prometheus",
        port: 9090,
        image: Image::Pinned(Offline {
            registry: "prom/prometheus:v2.53.3",
            package: "prometheus",
            version_prefix: "2.53.",
            recipe: Recipe::Binary {
                binary: ("usr/bin/prometheus", "bin/prometheus"),
                data: &[],
                dirs: &["prometheus", "etc/prometheus", "tmp"],
            },
        }),
        argv: |port| {
            vec![
                format!("--config.file={PROM_DIR}/prometheus.yml"),
                "--storage.tsdb.path=/prometheus".into(),
                listen(port),
                "--web.enable-lifecycle".into(),
                // A shared stack's reset deletes every sample (delete_series).
                "--web.enable-admin-api".into(),
            ]
        },
        ready: Ready::Http("/-/ready"),
        state: &["/prometheus"],
        reset: Reset::ReloadAndDelete,
        ..PLAIN
    },
    Component {
        kind: Kind::Alertmanager,
        name: "alertmanager",
        port: 9093,
        image: Image::Pinned(Offline {
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
        }),
        argv: |port| {
            vec![
                format!("--config.file={AM_CONFIG}"),
                "--storage.path=/alertmanager".into(),
                listen(port),
                // A single instance: no gossip settle delay before notifying.
                "--cluster.listen-address=".into(),
            ]
        },
        ready: Ready::Http("/-/ready"),
        state: &["/alertmanager"],
        reset: Reset::Restart,
        ..PLAIN
    },
    Component {
        kind: Kind::NodeExporter,
        name: "node-exporter",
        port: 9100,
        image: Image::Pinned(Offline {
            registry: "prom/node-exporter:v1.9.0",
            package: "prometheus-node-exporter",
            version_prefix: "1.9.",
            recipe: Recipe::Binary {
                binary: ("usr/bin/prometheus-node-exporter", "bin/node_exporter"),
                data: &[],
                dirs: &["tmp"],
            },
        }),
        argv: |port| vec![listen(port)],
        ready: Ready::Http("/metrics"),
        ..PLAIN
    },
    Component {
        kind: Kind::Fixture,
        name: "fixture",
        port: 8000,
        image: Image::Firedrill,
        argv: |port| {
            vec![
                "fixture".into(),
                "serve".into(),
                "--profile".into(),
                FIXTURE_PROFILE.into(),
                "--listen".into(),
                format!("0.0.0.0:{port}"),
            ]
        },
        ready: Ready::Http("/-/ready"),
        reset: Reset::InProcess,
        catalogue: Catalogue::Profile,
        ..PLAIN
    },
    Component {
        kind: Kind::TeamsMock,
        name: "teams-mock",
        port: 8080,
        image: Image::Firedrill,
        argv: |port| {
            vec![
                "teams-mock".into(),
                "--listen".into(),
                format!("0.0.0.0:{port}"),
                "--token-file".into(),
                TEAMS_TOKEN.into(),
            ]
        },
        ready: Ready::Http("/-/ready"),
        reset: Reset::InProcess,
        ..PLAIN
    },
    Component {
        kind: Kind::Grafana,
        name: "grafana",
        port: 3000,
        image: Image::Optional("grafana/grafana:11.6.0"),
        // Configured by environment (GF_*), not flags.
        argv: |_| vec![],
        ready: Ready::Http("/api/health"),
        ..PLAIN
    },
    Component {
        kind: Kind::Cadvisor,
        name: "cadvisor",
        port: 8080,
        image: Image::OrStandIn(
            "gcr.io/cadvisor/cadvisor:v0.49.1",
            // Reads the Docker API for the run's containers (fixture/cadvisor.rs).
            StandIn {
                argv: |port| {
                    vec![
                        "cadvisor".into(),
                        "--listen".into(),
                        format!("0.0.0.0:{port}"),
                    ]
                },
                binds: &["$DOCKER_SOCKET:/var/run/docker.sock"],
                ready: Ready::Http("/healthz"),
            },
        ),
        argv: |port| vec![format!("--port={port}")],
        ready: Ready::Http("/healthz"),
        binds: &[
            "/:/rootfs:ro",
            "/var/run:/var/run:ro",
            "/sys:/sys:ro",
            "/var/lib/docker/:/var/lib/docker:ro",
        ],
        catalogue: Catalogue::Static(include_str!("../fixtures/catalogs/cadvisor.yaml")),
        ..PLAIN
    },
    Component {
        kind: Kind::DcgmExporter,
        name: "dcgm-exporter",
        port: 9400,
        // Named as the seed's compose file names it, pinned.
        image: Image::OrStandIn(
            "nvidia/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04",
            // Reads the GPUs through NVML (exporter/dcgm.rs).
            StandIn {
                argv: |port| {
                    vec![
                        "dcgm-exporter".into(),
                        "--listen".into(),
                        format!("0.0.0.0:{port}"),
                    ]
                },
                binds: &[],
                ready: Ready::Http("/metrics"),
            },
        ),
        // The image's entrypoint runs dcgm-exporter with these arguments.
        argv: |port| vec![format!("--address=:{port}")],
        ready: Ready::Http("/metrics"),
        catalogue: Catalogue::Static(include_str!("../fixtures/catalogs/dcgm-exporter.yaml")),
        gpu: true,
        ..PLAIN
    },
    Component {
        kind: Kind::Postgres,
        name: "postgres",
        port: 5432,
        image: Image::Pinned(Offline {
            registry: "postgres:17",
            package: "postgresql-17",
            version_prefix: "17.",
            recipe: Recipe::Postgres,
        }),
        argv: |port| vec!["-c".into(), format!("port={port}")],
        ready: Ready::Tcp,
        // PostgreSQL refuses to run as root.
        owner: IMAGE_USER,
        catalogue: Catalogue::NoExposition("PostgreSQL speaks its wire protocol there"),
        ..PLAIN
    },
    Component {
        kind: Kind::PostgresExporter,
        name: "postgres-exporter",
        port: 9187,
        image: Image::Pinned(Offline {
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
        }),
        argv: |port| vec![listen(port)],
        ready: Ready::Http("/metrics"),
        catalogue: Catalogue::Static(include_str!("../fixtures/catalogs/postgres-exporter.yaml")),
        ..PLAIN
    },
    Component {
        kind: Kind::Container,
        name: "container",
        // No usual port: the stack file names the one it listens on.
        port: 0,
        image: Image::Service,
        // The image's own command, unless the service's `command` replaces it.
        argv: |_| vec![],
        // Its `ready` path, its healthcheck, else its port: see `stack::plan`.
        ready: Ready::Tcp,
        // Whatever it keeps in memory goes with a restart.
        reset: Reset::Restart,
        ..PLAIN
    },
];

/// The uid and gid of a non-root image user (PostgreSQL refuses root).
pub const IMAGE_USER: u32 = 999;
/// Where Prometheus' configuration and rule files are copied.
pub const PROM_DIR: &str = "/etc/prometheus";
/// Where Alertmanager's configuration is copied.
pub const AM_CONFIG: &str = "/etc/alertmanager/alertmanager.yml";
/// Where a fixture's resolved profile is copied in its container.
pub const FIXTURE_PROFILE: &str = "/etc/firedrill/profile.yaml";
/// Where the Teams mock's webhook token is copied in its container.
pub const TEAMS_TOKEN: &str = "/etc/firedrill/teams-token";

/// The last path segment of an image reference, tag and digest dropped,
/// lowercased: `prom/prometheus:v2.53.3` → `prometheus` (registry hosts
/// and organisations vary; the repository's name says what it runs).
pub fn image_name(image: &str) -> String {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split(':').next().unwrap_or(last).to_ascii_lowercase()
}

/// Repository names that run a kind under another name than its row's
/// official image.
const ALIASES: [(&str, Kind); 3] = [
    ("grafana-oss", Kind::Grafana),
    ("grafana-enterprise", Kind::Grafana),
    ("postgres_exporter", Kind::PostgresExporter),
];

/// The kind an image runs (`firedrill init --compose`), by its
/// repository's name: each row's official image, or an alias.
pub fn of_image(image: &str) -> Option<Kind> {
    let name = image_name(image);
    let official = |c: &Component| match c.image {
        Image::Pinned(o) => Some(o.registry),
        Image::Optional(r) | Image::OrStandIn(r, _) => Some(r),
        Image::Firedrill | Image::Service => None,
    };
    TABLE
        .iter()
        .find(|c| official(c).is_some_and(|r| image_name(r) == name))
        .map(|c| c.kind)
        .or_else(|| ALIASES.iter().find(|(a, _)| *a == name).map(|(_, k)| *k))
}

/// The row of `kind`.
pub fn of(kind: Kind) -> &'static Component {
    TABLE
        .iter()
        .find(|c| c.kind == kind)
        .expect("every kind has a row in components::TABLE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_row() {
        let kinds: std::collections::BTreeSet<Kind> = TABLE.iter().map(|c| c.kind).collect();
        assert_eq!(kinds.len(), TABLE.len());
        for c in &TABLE {
            assert_eq!(of(c.kind).name, c.name);
        }
    }

    #[test]
    fn images_name_their_kind() {
        assert_eq!(image_name("localhost:5000/org/cadvisor:v0.49"), "cadvisor");
        assert_eq!(image_name("postgres@sha256:abc"), "postgres");
        assert_eq!(of_image("prom/prometheus:latest"), Some(Kind::Prometheus));
        assert_eq!(
            of_image("localhost:5000/prom/alertmanager"),
            Some(Kind::Alertmanager)
        );
        assert_eq!(of_image("Grafana/Grafana-OSS:11"), Some(Kind::Grafana));
        assert_eq!(of_image("postgres:16-alpine"), Some(Kind::Postgres));
        assert_eq!(
            of_image("quay-mirror/prometheuscommunity/postgres-exporter"),
            Some(Kind::PostgresExporter)
        );
        assert_eq!(of_image("node:20"), None);
        assert_eq!(of_image("nginx"), None);
    }
}
