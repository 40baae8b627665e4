//! `firedrill gpu`: a GPU's SMs or memory under load by hand (a hands-on
//! drill, or to see what dcgm-exporter shows of it), for a bounded time.

use clap::Args;
use firedrill::chaos::gpu::{Load, Saturation};
use firedrill::spec::scenario::{MAX_GPU_FILL, MAX_GPU_HOLD};
use firedrill::spec::Dur;

#[derive(Args, Debug)]
pub(crate) struct GpuArgs {
    /// What to put under load.
    #[arg(long, value_enum)]
    saturate: Load,
    /// For `vram`: the share of the GPU's memory to bring in use, %.
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=MAX_GPU_FILL as i64))]
    fill: u8,
    /// How long (at most 1h); Ctrl-C ends it sooner.
    #[arg(long = "for", default_value = "1m", value_parser = |s: &str| Dur::parse(s).map_err(|e| e.to_string()))]
    for_: Dur,
    /// The GPU as NVML and dcgm-exporter number it (the `gpu` label).
    #[arg(long, default_value_t = 0)]
    gpu: u32,
}

pub(crate) async fn run(a: GpuArgs) -> firedrill::Result<i32> {
    if a.for_.0 > MAX_GPU_HOLD {
        return Err(firedrill::Error::Invalid("--for is at most 1h".into()));
    }
    let (load, fill, hold, gpu) = (a.saturate, a.fill, a.for_.0, a.gpu);
    let (sat, line) = tokio::task::spawn_blocking(move || {
        Saturation::start(firedrill::chaos::gpu::ordinal_of(gpu)?, load, fill, hold)
    })
    .await
    .expect("the GPU thread")?;
    println!("{line}; for {}", a.for_);
    tokio::select! {
        _ = tokio::time::sleep(hold) => {}
        _ = firedrill::util::interrupted() => {}
    }
    tokio::task::spawn_blocking(move || drop(sat))
        .await
        .expect("the GPU thread");
    println!("GPU {gpu}: load ended");
    Ok(0)
}
