//! A GPU put under load for real, through the CUDA driver API loaded at run
//! time (`cudarc` with dynamic loading: the binary builds and starts where
//! there is no CUDA; [`driver`] looks for `libcuda` before any call):
//! - `sm`: every SM spins on a hand-written PTX loop ([`SPIN_PTX`]) that
//!   reads the SM's clock until a cycle budget is spent, one launch at a
//!   time, each at most [`SLICE`] of GPU time, so that stopping takes
//!   effect within one slice;
//! - `vram`: device memory allocated (and zeroed, so it is committed) in
//!   [`CHUNK`]s until `fill` % of the GPU's memory is in use, and held.
//!
//! A [`Saturation`] runs on its own thread and ends when it is dropped (a
//! reset, the drill's end on every exit path), when [`MAX_HOLD`] or the
//! asked-for time has passed, or with the process, whose CUDA context the
//! driver then frees.

use crate::error::{err, Result};
pub use crate::spec::scenario::GpuLoad as Load;
use crate::spec::scenario::{MAX_GPU_FILL as MAX_FILL, MAX_GPU_HOLD as MAX_HOLD};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// The spin kernel: each thread reads `%clock64` until `cycles` have
/// passed. PTX ISA 7.0 for sm_70 is JIT-compiled by every driver since
/// CUDA 11 for every GPU since Volta (H100 included).
pub const SPIN_PTX: &str = r#".version 7.0
.target sm_70
.address_size 64

.visible .entry firedrill_spin(
	.param .u64 firedrill_spin_cycles
)
{
	.reg .pred 	%p<2>;
	.reg .b64 	%rd<5>;

	ld.param.u64 	%rd1, [firedrill_spin_cycles];
	mov.u64 	%rd2, %clock64;
	add.s64 	%rd3, %rd2, %rd1;
$L__spin:
	mov.u64 	%rd4, %clock64;
	setp.lt.u64 	%p1, %rd4, %rd3;
	@%p1 bra 	$L__spin;
	ret;
}
"#;

/// The kernel's name in [`SPIN_PTX`].
const SPIN: &str = "firedrill_spin";

/// The most GPU time one launch spins: a stop takes effect within it.
pub const SLICE: Duration = Duration::from_millis(100);

/// Device memory is taken in pieces of this size (the last one smaller).
pub const CHUNK: usize = 256 << 20;

/// Whether the CUDA driver library can be loaded; why not, in words.
pub fn driver() -> std::result::Result<(), String> {
    // Only loads the library (dlopen); no CUDA call is made before this.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err("no CUDA driver (libcuda.so.1 cannot be loaded)".into())
    }
}

/// A PCI address as NVML writes it (`00000000:65:00.0`): domain, bus and
/// device, the numbers CUDA's device attributes give.
pub fn pci_address(bus_id: &str) -> Option<(u32, u32, u32)> {
    let mut parts = bus_id.trim().split(':');
    let (domain, bus, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let device = rest.split('.').next()?;
    let hex = |x: &str| u32::from_str_radix(x, 16).ok();
    Some((hex(domain)?, hex(bus)?, hex(device)?))
}

/// The CUDA ordinal of the GPU at PCI address `bus_id`: CUDA numbers GPUs
/// fastest first (and as `CUDA_VISIBLE_DEVICES` says), NVML and
/// dcgm-exporter's `gpu` label by PCI bus, so the two are matched by address.
fn cuda_ordinal(bus_id: &str) -> Cuda<Option<usize>> {
    use cudarc::driver::result;
    use cudarc::driver::sys::CUdevice_attribute::*;
    let Some(want) = pci_address(bus_id) else {
        return Ok(None);
    };
    result::init()?;
    for i in 0..result::device::get_count()? {
        let d = result::device::get(i)?;
        // SAFETY: attributes of a device the driver just numbered.
        let at = |a| unsafe { result::device::get_attribute(d, a) }.map(|v| v as u32);
        let here = (
            at(CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?,
            at(CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?,
            at(CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?,
        );
        if here == want {
            return Ok(Some(i as usize));
        }
    }
    Ok(None)
}

/// The CUDA ordinal of the GPU NVML numbers `index` (dcgm-exporter's `gpu`).
pub fn ordinal_of(index: u32) -> Result<usize> {
    driver().map_err(|why| err!(Component, "GPU chaos: {why}"))?;
    let nvml = crate::images::gpu::nvml().map_err(|why| err!(Component, "GPU chaos: {why}"))?;
    let bus_id = nvml
        .nvml
        .device_by_index(index)
        .and_then(|d| d.pci_info())
        .map_err(|e| err!(Component, "GPU chaos: NVML GPU {index}: {e}"))?
        .bus_id;
    cuda_ordinal(&bus_id)
        .map_err(|e| err!(Component, "GPU chaos: {e}"))?
        .ok_or_else(|| {
            err!(
                Component,
                "GPU chaos: NVML's GPU {index} ({bus_id}) is not among the GPUs CUDA sees (CUDA_VISIBLE_DEVICES?)"
            )
        })
}

/// The cycles one launch spins for `slice` at an SM clock of `clock_khz`.
pub fn spin_cycles(clock_khz: u32, slice: Duration) -> u64 {
    u64::from(clock_khz) * slice.as_micros() as u64 / 1000
}

/// The launch for `sms` multiprocessors: blocks, threads per block. Four
/// blocks of 256 threads per SM keeps every SM's schedulers busy.
pub fn grid(sms: u32) -> (u32, u32) {
    (sms.max(1) * 4, 256)
}

/// The allocations that bring a GPU of `total` bytes, `used` of them in
/// use, to `fill` % in use: none when it is there already.
pub fn chunks(total: usize, used: usize, fill: u8) -> Vec<usize> {
    let target = total / 100 * usize::from(fill.min(MAX_FILL));
    let mut left = target.saturating_sub(used);
    let mut out = Vec::new();
    while left > 0 {
        let n = left.min(CHUNK);
        out.push(n);
        left -= n;
    }
    out
}

/// A GPU under load on its own thread; dropping it ends the load and
/// frees what it holds.
pub struct Saturation {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Saturation {
    /// Puts GPU `device` under `load` (`fill` % for `vram`) for at most
    /// `hold` (capped at [`MAX_HOLD`]); returns once the load is on, with
    /// what was done in a line, or why it could not be.
    pub fn start(device: usize, load: Load, fill: u8, hold: Duration) -> Result<(Self, String)> {
        driver().map_err(|why| err!(Component, "GPU chaos: {why}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let deadline = Instant::now() + hold.min(MAX_HOLD);
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let on = |line: String| {
                    let _ = tx.send(Ok(line));
                };
                let r = match load {
                    Load::Sm => spin(device, &stop, deadline, on),
                    Load::Vram => fill_memory(device, fill, &stop, deadline, on),
                };
                if let Err(e) = r {
                    // Before the load was on, the caller hears it; after, the log.
                    let _ = tx.send(Err(e.to_string()));
                    tracing::warn!("GPU {device}: {e}");
                }
            }
        });
        let mut s = Saturation {
            stop,
            thread: Some(thread),
        };
        match rx.recv() {
            Ok(Ok(line)) => Ok((s, line)),
            Ok(Err(e)) => Err(err!(Component, "GPU chaos on GPU {device}: {e}")),
            Err(_) => {
                s.end();
                Err(err!(
                    Component,
                    "GPU chaos on GPU {device} stopped before the load was on"
                ))
            }
        }
    }

    /// Ends the load and waits until the GPU is free of it.
    fn end(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Saturation {
    fn drop(&mut self) {
        self.end();
    }
}

type Cuda<T> = std::result::Result<T, cudarc::driver::DriverError>;

/// Launches the spin kernel on every SM, slice after slice, until stopped.
fn spin(device: usize, stop: &AtomicBool, deadline: Instant, on: impl FnOnce(String)) -> Cuda<()> {
    use cudarc::driver::sys::CUdevice_attribute::*;
    use cudarc::driver::{CudaContext, LaunchConfig, PushKernelArg};
    let ctx = CudaContext::new(device)?;
    let sms = ctx.attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32;
    let khz = ctx.attribute(CU_DEVICE_ATTRIBUTE_CLOCK_RATE)? as u32;
    let module = ctx.load_module(cudarc::nvrtc::Ptx::from_src(SPIN_PTX))?;
    let f = module.load_function(SPIN)?;
    let stream = ctx.default_stream();
    let cycles = spin_cycles(khz, SLICE);
    let (blocks, threads) = grid(sms);
    let cfg = LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    let mut first = Some(on);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        // SAFETY: the kernel takes one u64 by value, as pushed.
        unsafe { stream.launch_builder(&f).arg(&cycles).launch(cfg) }?;
        if let Some(on) = first.take() {
            on(format!(
                "GPU {device} ({}): {sms} SMs spinning, {} blocks of {threads} threads, {} ms a launch",
                ctx.name().unwrap_or_default(),
                blocks,
                SLICE.as_millis()
            ));
        }
        stream.synchronize()?;
    }
    Ok(())
}

/// Allocates device memory until `fill` % is in use, holds it until
/// stopped, and frees it.
fn fill_memory(
    device: usize,
    fill: u8,
    stop: &AtomicBool,
    deadline: Instant,
    on: impl FnOnce(String),
) -> Cuda<()> {
    use cudarc::driver::CudaContext;
    let ctx = CudaContext::new(device)?;
    let stream = ctx.default_stream();
    let (free, total) = ctx.mem_get_info()?;
    let mut held = Vec::new();
    for n in chunks(total, total - free, fill) {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        held.push(stream.alloc_zeros::<u8>(n)?);
    }
    stream.synchronize()?;
    let (free, _) = ctx.mem_get_info()?;
    let gib = |b: usize| b as f64 / f64::from(1u32 << 30);
    on(format!(
        "GPU {device} ({}): {:.1} GiB held, {:.0} % of {:.1} GiB in use",
        ctx.name().unwrap_or_default(),
        gib(held.iter().map(|s| s.len()).sum()),
        100.0 * (total - free) as f64 / total as f64,
        gib(total)
    ));
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(SLICE);
    }
    drop(held);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spin_kernel_is_one_bounded_clock_loop() {
        assert!(SPIN_PTX.starts_with(".version 7.0\n.target sm_70\n.address_size 64\n"));
        assert!(SPIN_PTX.contains(&format!(".visible .entry {SPIN}(")));
        // The loop compares the SM's clock to start + budget, and ends.
        let body = &SPIN_PTX[SPIN_PTX.find('{').unwrap()..];
        assert_eq!(body.matches("%clock64").count(), 2);
        assert!(body.contains("add.s64 \t%rd3, %rd2, %rd1;"));
        assert!(body.contains("@%p1 bra \t$L__spin;"));
        assert!(body.trim_end().ends_with("ret;\n}"));
        assert_eq!(SPIN_PTX.matches('{').count(), SPIN_PTX.matches('}').count());
    }

    #[test]
    fn nvml_and_cuda_meet_at_the_pci_address() {
        assert_eq!(pci_address("00000000:65:00.0"), Some((0, 0x65, 0)));
        assert_eq!(pci_address("0001:B3:1f.0"), Some((1, 0xb3, 0x1f)));
        assert_eq!(pci_address("nonsense"), None);
    }

    #[test]
    fn a_launch_spins_one_slice() {
        // An H100's SM clock, 1980 MHz: 100 ms is 198 M cycles.
        assert_eq!(spin_cycles(1_980_000, SLICE), 198_000_000);
        assert_eq!(grid(132), (528, 256));
        assert_eq!(grid(0), (4, 256));
    }

    #[test]
    fn memory_is_filled_to_the_share_asked_and_no_further() {
        let gib = 1usize << 30;
        let c = chunks(80 * gib, 10 * gib, 95);
        assert_eq!(c.iter().sum::<usize>(), 80 * gib / 100 * 95 - 10 * gib);
        assert!(c.iter().all(|&n| n <= CHUNK));
        // Already fuller than asked: nothing is taken.
        assert!(chunks(80 * gib, 79 * gib, 90).is_empty());
        // Never past MAX_FILL, whatever is asked.
        assert_eq!(
            chunks(100 * gib, 0, 100).iter().sum::<usize>(),
            100 * gib / 100 * 99
        );
    }

    #[test]
    fn without_a_driver_chaos_says_why_and_starts_nothing() {
        if driver().is_ok() {
            return; // a machine with CUDA: the real path is the device run's
        }
        let e = Saturation::start(0, Load::Sm, 0, Duration::from_secs(1))
            .err()
            .expect("no driver, no saturation");
        assert!(e.to_string().contains("libcuda.so.1"), "{e}");
    }
}
