//! cAdvisor's exposition: one [`Sample`] per container rendered under
//! cAdvisor's family names, types, help texts and labels (`id`, `image`,
//! `name`, `container_label_*`), every sample with its explicit timestamp.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One container as measured at one instant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// cAdvisor's `id`: the container's cgroup path.
    pub id: String,
    /// The container's name, without Docker's leading slash.
    pub name: String,
    /// The image as the container was created from it.
    pub image: String,
    /// The container's labels (exported as `container_label_*`).
    pub labels: BTreeMap<String, String>,
    /// When it was measured, unix milliseconds (every sample's timestamp).
    pub at_ms: i64,
    /// When its process last started, unix seconds.
    pub started: f64,
    /// CPU time, user and system, nanoseconds.
    pub cpu_total_ns: u64,
    /// User CPU time, nanoseconds.
    pub cpu_user_ns: u64,
    /// System CPU time, nanoseconds.
    pub cpu_system_ns: u64,
    /// The CFS quota and period (µs), when a CPU limit is set.
    pub quota: Option<(u64, u64)>,
    /// CFS periods, throttled periods, throttled nanoseconds.
    pub throttling: (u64, u64, u64),
    /// Relative CPU weight (`--cpu-shares`, 1024 by default).
    pub shares: u64,
    /// Memory charged to the cgroup, bytes.
    pub mem_usage: u64,
    /// Memory charged less inactive file pages, bytes.
    pub mem_working_set: u64,
    /// Anonymous memory, bytes.
    pub mem_rss: u64,
    /// Page cache, bytes.
    pub mem_cache: u64,
    /// The memory limit in bytes, 0 without one.
    pub mem_limit: u64,
    /// Times the cgroup hit its limit (cgroup v1), if known.
    pub mem_failcnt: Option<u64>,
    /// The greatest usage seen (cgroup v1), if known.
    pub mem_max_usage: Option<u64>,
    /// OOM kills seen in the container since the exporter started.
    pub oom_events: u64,
    /// Per network interface: rx bytes, rx packets, rx errors, rx dropped,
    /// tx bytes, tx packets, tx errors, tx dropped.
    pub net: BTreeMap<String, [u64; 8]>,
    /// Per block device (`major:minor`): bytes read, bytes written.
    pub io: BTreeMap<String, [u64; 2]>,
    /// The writable layer's size, bytes, when measured.
    pub fs_usage: Option<u64>,
    /// Tasks (threads) in the cgroup.
    pub tasks: Option<u64>,
}

/// A label name as cAdvisor makes it from a container label's key.
fn label_name(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    s.insert_str(0, "container_label_");
    s
}

/// A label value as the exposition format writes it.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One family in the exposition format, samples timestamped.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn line(&mut self, name: &str, s: &Sample, extra: &[(&str, &str)], value: f64) {
        let mut labels: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.extend(s.labels.iter().map(|(k, v)| (label_name(k), v.clone())));
        labels.push(("id".into(), s.id.clone()));
        labels.push(("image".into(), s.image.clone()));
        labels.push(("name".into(), s.name.clone()));
        labels.sort();
        let body: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(self.out, "{name}{{{}}} {value} {}", body.join(","), s.at_ms);
    }
}

/// cAdvisor's network counters, per interface.
const NET: [(&str, &str); 8] = [
    (
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
    ),
    (
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
    ),
    (
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
    ),
    (
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
    ),
    (
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
    ),
    (
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
    ),
    (
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
    ),
    (
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
    ),
];

/// The families with one series per container: name, type, help, value
/// (`None`: the container has no such series).
#[allow(clippy::type_complexity)]
const FAMILIES: &[(&str, &str, &str, fn(&Sample) -> Option<f64>)] = &[
    (
        "container_last_seen",
        "gauge",
        "Last time a container was seen by the exporter",
        |s| Some(s.at_ms as f64 / 1000.0),
    ),
    (
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds.",
        |s| Some(s.started),
    ),
    (
        "container_cpu_user_seconds_total",
        "counter",
        "Cumulative user cpu time consumed in seconds.",
        |s| Some(s.cpu_user_ns as f64 / 1e9),
    ),
    (
        "container_cpu_system_seconds_total",
        "counter",
        "Cumulative system cpu time consumed in seconds.",
        |s| Some(s.cpu_system_ns as f64 / 1e9),
    ),
    (
        "container_spec_cpu_shares",
        "gauge",
        "CPU share of the container.",
        |s| Some(s.shares as f64),
    ),
    (
        "container_spec_cpu_quota",
        "gauge",
        "CPU quota of the container.",
        |s| s.quota.map(|q| q.0 as f64),
    ),
    (
        "container_spec_cpu_period",
        "gauge",
        "CPU period of the container.",
        |s| s.quota.map(|q| q.1 as f64),
    ),
    (
        "container_cpu_cfs_periods_total",
        "counter",
        "Number of elapsed enforcement period intervals.",
        |s| s.quota.map(|_| s.throttling.0 as f64),
    ),
    (
        "container_cpu_cfs_throttled_periods_total",
        "counter",
        "Number of throttled period intervals.",
        |s| s.quota.map(|_| s.throttling.1 as f64),
    ),
    (
        "container_cpu_cfs_throttled_seconds_total",
        "counter",
        "Total time duration the container has been throttled.",
        |s| s.quota.map(|_| s.throttling.2 as f64 / 1e9),
    ),
    (
        "container_memory_usage_bytes",
        "gauge",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        |s| Some(s.mem_usage as f64),
    ),
    (
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set in bytes.",
        |s| Some(s.mem_working_set as f64),
    ),
    (
        "container_memory_rss",
        "gauge",
        "Size of RSS in bytes.",
        |s| Some(s.mem_rss as f64),
    ),
    (
        "container_memory_cache",
        "gauge",
        "Number of bytes of page cache memory.",
        |s| Some(s.mem_cache as f64),
    ),
    (
        "container_memory_max_usage_bytes",
        "gauge",
        "Maximum memory usage recorded in bytes",
        |s| s.mem_max_usage.map(|v| v as f64),
    ),
    (
        "container_memory_failcnt",
        "counter",
        "Number of memory usage hits limits",
        |s| s.mem_failcnt.map(|v| v as f64),
    ),
    (
        "container_spec_memory_limit_bytes",
        "gauge",
        "Memory limit for the container.",
        |s| Some(s.mem_limit as f64),
    ),
    (
        "container_oom_events_total",
        "counter",
        "Count of out of memory events observed for the container",
        |s| Some(s.oom_events as f64),
    ),
    (
        "container_threads",
        "gauge",
        "Number of threads running inside the container",
        |s| s.tasks.map(|v| v as f64),
    ),
    (
        "container_fs_usage_bytes",
        "gauge",
        "Number of bytes that are consumed by the container on this filesystem.",
        |s| s.fs_usage.map(|v| v as f64),
    ),
];

/// cAdvisor's block I/O counters, per device.
const IO: [(&str, &str); 2] = [
    (
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read",
    ),
    (
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written",
    ),
];

/// Families with a series per container and key (an interface, a device):
/// the `i`-th of `families` takes the `i`-th value of each key; a family
/// with no series is left out, as cAdvisor leaves it.
fn keyed<const N: usize>(
    f: &mut Family,
    samples: &[Sample],
    families: &[(&str, &str); N],
    label: &str,
    values: fn(&Sample) -> &BTreeMap<String, [u64; N]>,
) {
    for (i, (name, help)) in families.iter().enumerate() {
        let mut headed = false;
        for s in samples {
            for (key, v) in values(s) {
                if !headed {
                    f.head(name, "counter", help);
                    headed = true;
                }
                f.line(name, s, &[(label, key)], v[i] as f64);
            }
        }
    }
}

/// The exposition of `samples`, as cAdvisor writes it.
pub fn render(samples: &[Sample]) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let ns = |v: u64| v as f64 / 1e9;
    // cpu="total": cAdvisor's label when per-CPU usage is not collected.
    f.head(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed in seconds.",
    );
    for s in samples {
        f.line(
            "container_cpu_usage_seconds_total",
            s,
            &[("cpu", "total")],
            ns(s.cpu_total_ns),
        );
    }
    for (name, kind, help, get) in FAMILIES {
        let mut headed = false;
        for s in samples {
            if let Some(v) = get(s) {
                if !headed {
                    f.head(name, kind, help);
                    headed = true;
                }
                f.line(name, s, &[], v);
            }
        }
    }
    keyed(&mut f, samples, &NET, "interface", |s| &s.net);
    keyed(&mut f, samples, &IO, "device", |s| &s.io);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_with_no_series_is_left_out() {
        let mut s = Sample::default();
        s.io.insert("8:0".into(), [10, 20]);
        let text = render(&[s]);
        assert!(
            !text.contains("container_network_receive_bytes_total"),
            "{text}"
        );
        assert!(!text.contains("container_cpu_cfs_periods_total"), "{text}");
        assert!(
            text.contains(
                "container_fs_reads_bytes_total{device=\"8:0\",id=\"\",image=\"\",name=\"\"} 10 0"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "container_fs_writes_bytes_total{device=\"8:0\",id=\"\",image=\"\",name=\"\"} 20 0"
            ),
            "{text}"
        );
    }

    #[test]
    fn label_names_and_values_as_cadvisor_writes_them() {
        assert_eq!(
            label_name("com.docker.compose.service"),
            "container_label_com_docker_compose_service"
        );
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
