//! firedrill's stand-in for NVIDIA's dcgm-exporter on a machine with an
//! NVIDIA driver but no dcgm-exporter image: it reads each GPU through NVML
//! (`nvml-wrapper`, which loads `libnvidia-ml.so.1` at run time, so the
//! binary builds and runs where there is none) every second and serves
//! dcgm-exporter's default names, help texts and labels (`gpu`, `UUID`,
//! `pci_bus_id`, `device`, `modelName`, `Hostname`), the same as the `dcgm`
//! fixture (fixtures/dcgm.yaml) that plays it where there is no GPU.
//!
//! The mapping from NVML's units to DCGM's ([`Field`], [`Reading`],
//! [`render`]) is pure and tested without a GPU. What NVML cannot give is
//! left out rather than made up: the memory temperature and the profiling
//! ratios (`DCGM_FI_PROF_*`) come from DCGM itself; a field the GPU does not
//! support (ECC on a card without it) has no series, as in dcgm-exporter.
//! `DCGM_FI_DEV_XID_ERRORS` is the last XID NVML's critical-XID events
//! reported since the exporter started (0 before any), as DCGM's is.

use super::cadvisor::escape;
use crate::error::{err, Result};
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How often the GPUs are read (dcgm-exporter's collect interval, shortened
/// so that time-compressed drills see a change within a scrape).
const COLLECT: Duration = Duration::from_secs(1);

/// A dcgm-exporter field firedrill reads through NVML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    /// SM clock, MHz.
    SmClock,
    /// Memory clock, MHz.
    MemClock,
    /// GPU die temperature, °C.
    GpuTemp,
    /// Power draw, W (NVML: mW).
    PowerUsage,
    /// Energy since the driver loaded, mJ.
    TotalEnergy,
    /// PCIe replays.
    PcieReplays,
    /// Time a kernel ran, % of the sample period.
    GpuUtil,
    /// Time device memory was read or written, %.
    MemCopyUtil,
    /// Encoder utilisation, %.
    EncUtil,
    /// Decoder utilisation, %.
    DecUtil,
    /// The last XID error.
    XidErrors,
    /// Framebuffer free, MiB (NVML: bytes).
    FbFree,
    /// Framebuffer used, MiB.
    FbUsed,
    /// Framebuffer reserved by the driver, MiB.
    FbReserved,
    /// Double-bit (uncorrected) volatile ECC errors.
    EccDbeVolatile,
}

impl Field {
    /// Every field, in dcgm-exporter's order of its default counters.
    pub const ALL: [Field; 15] = [
        Field::SmClock,
        Field::MemClock,
        Field::GpuTemp,
        Field::PowerUsage,
        Field::TotalEnergy,
        Field::PcieReplays,
        Field::GpuUtil,
        Field::MemCopyUtil,
        Field::EncUtil,
        Field::DecUtil,
        Field::XidErrors,
        Field::FbFree,
        Field::FbUsed,
        Field::FbReserved,
        Field::EccDbeVolatile,
    ];

    /// Its name in dcgm-exporter's exposition.
    pub fn name(self) -> &'static str {
        match self {
            Field::SmClock => "DCGM_FI_DEV_SM_CLOCK",
            Field::MemClock => "DCGM_FI_DEV_MEM_CLOCK",
            Field::GpuTemp => "DCGM_FI_DEV_GPU_TEMP",
            Field::PowerUsage => "DCGM_FI_DEV_POWER_USAGE",
            Field::TotalEnergy => "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            Field::PcieReplays => "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
            Field::GpuUtil => "DCGM_FI_DEV_GPU_UTIL",
            Field::MemCopyUtil => "DCGM_FI_DEV_MEM_COPY_UTIL",
            Field::EncUtil => "DCGM_FI_DEV_ENC_UTIL",
            Field::DecUtil => "DCGM_FI_DEV_DEC_UTIL",
            Field::XidErrors => "DCGM_FI_DEV_XID_ERRORS",
            Field::FbFree => "DCGM_FI_DEV_FB_FREE",
            Field::FbUsed => "DCGM_FI_DEV_FB_USED",
            Field::FbReserved => "DCGM_FI_DEV_FB_RESERVED",
            Field::EccDbeVolatile => "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        }
    }

    /// Its help text, as dcgm-exporter's default-counters.csv words it.
    pub fn help(self) -> &'static str {
        match self {
            Field::SmClock => "SM clock frequency (in MHz).",
            Field::MemClock => "Memory clock frequency (in MHz).",
            Field::GpuTemp => "GPU temperature (in C).",
            Field::PowerUsage => "Power draw (in W).",
            Field::TotalEnergy => "Total energy consumption since boot (in mJ).",
            Field::PcieReplays => "Total number of PCIe retries.",
            Field::GpuUtil => "GPU utilization (in %).",
            Field::MemCopyUtil => "Memory utilization (in %).",
            Field::EncUtil => "Encoder utilization (in %).",
            Field::DecUtil => "Decoder utilization (in %).",
            Field::XidErrors => "Value of the last XID error encountered.",
            Field::FbFree => "Framebuffer memory free (in MiB).",
            Field::FbUsed => "Framebuffer memory used (in MiB).",
            Field::FbReserved => "Framebuffer memory reserved (in MiB).",
            Field::EccDbeVolatile => "Total number of double-bit volatile ECC errors.",
        }
    }
}

/// NVML's bytes as DCGM's MiB (whole MiB, rounded down, as DCGM reports them).
pub fn mib(bytes: u64) -> f64 {
    (bytes / (1 << 20)) as f64
}

/// NVML's milliwatts as DCGM's watts.
pub fn watts(milliwatts: u32) -> f64 {
    f64::from(milliwatts) / 1000.0
}

/// One GPU as read at one instant: who it is and the fields it answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// NVML's index (`gpu`).
    pub index: u32,
    /// `GPU-…` (`UUID`).
    pub uuid: String,
    /// `00000000:65:00.0` (`pci_bus_id`).
    pub pci_bus_id: String,
    /// The device node's minor number (`device="nvidia<minor>"`).
    pub minor: u32,
    /// `NVIDIA H100 80GB HBM3` (`modelName`).
    pub model: String,
    /// The fields the GPU answered; one it does not support is absent.
    pub values: Vec<(Field, f64)>,
}

/// The readings in dcgm-exporter's exposition: per field, its HELP and TYPE
/// (gauge: dcgm-exporter's counter-typed fields do not end in `_total`, and
/// are served as gauges as the fixture does) and one series per GPU.
pub fn render(readings: &[Reading], hostname: &str) -> String {
    let mut out = String::new();
    for f in Field::ALL {
        let rows: Vec<_> = readings
            .iter()
            .filter_map(|r| r.values.iter().find(|(g, _)| *g == f).map(|(_, v)| (r, v)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {} {}", f.name(), f.help());
        let _ = writeln!(out, "# TYPE {} gauge", f.name());
        for (r, v) in rows {
            let _ = writeln!(
                out,
                "{}{{gpu=\"{}\",UUID=\"{}\",pci_bus_id=\"{}\",device=\"nvidia{}\",modelName=\"{}\",Hostname=\"{}\"}} {v}",
                f.name(),
                r.index,
                escape(&r.uuid),
                escape(&r.pci_bus_id),
                r.minor,
                escape(&r.model),
                escape(hostname)
            );
        }
    }
    out
}

/// NVML, loaded (images::gpu): reads the GPUs it sees.
pub struct Nvml(crate::images::gpu::Nvml);

impl Nvml {
    /// Every GPU's identity and the fields it answers; `xid` is the last
    /// XID seen per GPU index.
    pub fn read(&self, xid: &[u64]) -> Result<Vec<Reading>> {
        use nvml_wrapper::enum_wrappers::device::{
            Clock, EccCounter, MemoryError, TemperatureSensor,
        };
        let mut out = Vec::new();
        for i in 0..self.0.count {
            let d = self
                .0
                .nvml
                .device_by_index(i)
                .map_err(|e| err!(Component, "NVML: GPU {i}: {e}"))?;
            let mut values = Vec::new();
            let mut put = |f: Field, v: Option<f64>| values.extend(v.map(|v| (f, v)));
            put(Field::SmClock, d.clock_info(Clock::SM).ok().map(f64::from));
            put(
                Field::MemClock,
                d.clock_info(Clock::Memory).ok().map(f64::from),
            );
            put(
                Field::GpuTemp,
                d.temperature(TemperatureSensor::Gpu).ok().map(f64::from),
            );
            put(Field::PowerUsage, d.power_usage().ok().map(watts));
            put(
                Field::TotalEnergy,
                d.total_energy_consumption().ok().map(|e| e as f64),
            );
            put(
                Field::PcieReplays,
                d.pcie_replay_counter().ok().map(f64::from),
            );
            let u = d.utilization_rates().ok();
            put(Field::GpuUtil, u.as_ref().map(|u| f64::from(u.gpu)));
            put(Field::MemCopyUtil, u.as_ref().map(|u| f64::from(u.memory)));
            put(
                Field::EncUtil,
                d.encoder_utilization()
                    .ok()
                    .map(|u| f64::from(u.utilization)),
            );
            put(
                Field::DecUtil,
                d.decoder_utilization()
                    .ok()
                    .map(|u| f64::from(u.utilization)),
            );
            put(
                Field::XidErrors,
                Some(xid.get(i as usize).copied().unwrap_or(0) as f64),
            );
            let m = d.memory_info().ok();
            put(Field::FbFree, m.as_ref().map(|m| mib(m.free)));
            put(Field::FbUsed, m.as_ref().map(|m| mib(m.used)));
            put(Field::FbReserved, m.as_ref().map(|m| mib(m.reserved)));
            put(
                Field::EccDbeVolatile,
                d.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
                    .ok()
                    .map(|n| n as f64),
            );
            let pci = d
                .pci_info()
                .map_err(|e| err!(Component, "NVML: GPU {i}: {e}"))?;
            out.push(Reading {
                index: i,
                uuid: d.uuid().unwrap_or_default(),
                pci_bus_id: pci.bus_id,
                minor: d.minor_number().unwrap_or(i),
                model: d.name().unwrap_or_default(),
                values,
            });
        }
        Ok(out)
    }
}

/// Records the last critical XID of each GPU as NVML reports them, until
/// the process ends (NVML's event wait is blocking: its own thread).
fn watch_xids(nvml: &'static Nvml, last: Arc<RwLock<Vec<u64>>>) {
    use nvml_wrapper::bitmasks::event::EventTypes;
    use nvml_wrapper::enums::event::XidError;
    let Ok(mut set) = nvml.0.nvml.create_event_set() else {
        tracing::warn!("NVML: no event set: DCGM_FI_DEV_XID_ERRORS stays 0");
        return;
    };
    for i in 0..nvml.0.count {
        if let Ok(d) = nvml.0.nvml.device_by_index(i) {
            match d.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
                Ok(s) => set = s,
                Err(e) => {
                    tracing::warn!("NVML: GPU {i} reports no XID events: {}", e.error);
                    return;
                }
            }
        }
    }
    loop {
        match set.wait(1000) {
            Ok(ev) => {
                if let (Ok(i), Some(XidError::Value(x))) = (ev.device.index(), ev.event_data) {
                    if let Some(slot) = last.write().expect("xid lock").get_mut(i as usize) {
                        *slot = x;
                    }
                }
            }
            Err(nvml_wrapper::error::NvmlError::Timeout) => {}
            // Not a quiet second: do not spin on a failing wait.
            Err(_) => std::thread::sleep(COLLECT),
        }
    }
}

/// Serves the GPUs' metrics on `listen` until interrupted; an error when the
/// machine has no NVIDIA driver or GPU.
pub async fn serve(listen: &str) -> Result<()> {
    use axum::routing::get;
    let nvml: &'static Nvml =
        Box::leak(Box::new(crate::images::gpu::nvml().map(Nvml).map_err(
            |why| err!(Component, "dcgm-exporter stand-in: {why}"),
        )?));
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let xid = Arc::new(RwLock::new(vec![0u64; nvml.0.count as usize]));
    let latest = Arc::new(RwLock::new(String::new()));
    std::thread::spawn({
        let xid = xid.clone();
        move || watch_xids(nvml, xid)
    });
    std::thread::spawn({
        let latest = latest.clone();
        move || loop {
            let seen = xid.read().expect("xid lock").clone();
            match nvml.read(&seen) {
                Ok(r) => *latest.write().expect("latest lock") = render(&r, &hostname),
                Err(e) => tracing::warn!("{e}"),
            }
            std::thread::sleep(COLLECT);
        }
    });
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let text = latest.read().expect("latest lock").clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    text,
                )
            }
        }),
    );
    let what = format!(
        "dcgm-exporter stand-in ({} GPU(s) through NVML)",
        nvml.0.count
    );
    super::serve_app(listen, app, what).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h100() -> Reading {
        Reading {
            index: 0,
            uuid: "GPU-6f1c2a9e".into(),
            pci_bus_id: "00000000:65:00.0".into(),
            minor: 0,
            model: "NVIDIA H100 80GB HBM3".into(),
            values: vec![
                (Field::GpuUtil, 100.0),
                (Field::FbUsed, mib(80_000 * 1024 * 1024 + 512)),
                (Field::PowerUsage, watts(312_500)),
            ],
        }
    }

    #[test]
    fn nvml_units_become_dcgm_units() {
        assert_eq!(mib(80_000 * 1024 * 1024 + 512), 80_000.0);
        assert_eq!(watts(312_500), 312.5);
    }

    #[test]
    fn readings_render_with_dcgm_exporters_names_and_labels() {
        let text = render(&[h100()], "gpu-node");
        assert!(text.contains("# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n"));
        assert!(text.contains(
            "DCGM_FI_DEV_FB_USED{gpu=\"0\",UUID=\"GPU-6f1c2a9e\",pci_bus_id=\"00000000:65:00.0\",device=\"nvidia0\",modelName=\"NVIDIA H100 80GB HBM3\",Hostname=\"gpu-node\"} 80000\n"
        ));
        assert!(text.contains("DCGM_FI_DEV_POWER_USAGE{") && text.contains("} 312.5\n"));
        // A field the GPU did not answer has no family at all.
        assert!(!text.contains("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"));
    }

    /// The fixture that plays dcgm-exporter where there is no GPU and this
    /// exporter say the same: every field is a family of the fixture, with
    /// the same help text and the same label names.
    #[test]
    fn the_fixture_and_the_nvml_exporter_agree() {
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(include_str!("../../fixtures/dcgm.yaml")).unwrap();
        let families = doc["families"].as_sequence().unwrap();
        let labels = |v: &serde_yaml_ng::Value| -> Vec<String> {
            let mut k: Vec<String> = v["const_labels"]
                .as_mapping()
                .unwrap()
                .keys()
                .map(|k| k.as_str().unwrap().to_string())
                .collect();
            k.sort();
            k
        };
        let mut ours = vec![
            "gpu",
            "UUID",
            "pci_bus_id",
            "device",
            "modelName",
            "Hostname",
        ];
        ours.sort();
        for f in Field::ALL {
            let fam = families
                .iter()
                .find(|x| x["name"].as_str() == Some(f.name()))
                .unwrap_or_else(|| panic!("{} is not in fixtures/dcgm.yaml", f.name()));
            assert_eq!(fam["help"].as_str(), Some(f.help()), "{}", f.name());
            assert_eq!(labels(fam), ours, "{}", f.name());
        }
    }
}
