//! `firedrill up`, `chaos`, `watch`: a stack kept up for a drill by hand.

use firedrill::live::{self, Event};
use firedrill::{images, stack, ImageSource, Result};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub(crate) struct UpArgs {
    /// The stack file.
    #[arg(default_value = "stack/stack.yaml")]
    stack: PathBuf,
    /// Its `for` windows and intervals scaled by this factor (as a
    /// scenario's `time_scale`): 0.1 fires a 1m alert in 6 s.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    #[arg(long, value_enum, env = "FIREDRILL_IMAGES", default_value = "auto")]
    images: ImageSource,
}

pub(crate) async fn up(a: UpArgs) -> Result<i32> {
    if !(a.time_scale > 0.0 && a.time_scale <= 1.0) {
        return Err(firedrill::Error::Invalid(format!(
            "--time-scale {} is not in (0, 1]",
            a.time_scale
        )));
    }
    let docker = stack::connect().await?;
    let imgs = images::ensure(&docker, a.images).await?;
    // Ctrl-C or SIGTERM during the bring-up drops the stack: it is removed.
    let up = tokio::select! {
        r = live::up(&docker, &imgs, &a.stack, a.time_scale) => r?,
        _ = firedrill::util::interrupted() => return Ok(130),
    };
    println!("run {} is up ({})", up.run_id, a.stack.display());
    for (svc, what, url) in &up.urls {
        println!("  {svc:<16} {what:<36} {url}");
    }
    for (svc, why) in &up.skipped {
        println!("  {svc:<16} skipped: {why}");
    }
    let id = &up.run_id;
    println!("set a fault:   firedrill chaos {id} stop SERVICE   (or '{{fixture: SERVICE, set: {{latency: 500ms}}}}')");
    println!("follow it:     firedrill watch {id}");
    println!("remove it:     firedrill down {id}");
    Ok(0)
}

pub(crate) async fn chaos(run: &str, action: &str) -> Result<i32> {
    let action = live::parse_action(action)?;
    let docker = stack::connect().await?;
    println!("{}", live::chaos(&docker, run, &action).await?);
    Ok(0)
}

pub(crate) async fn watch(run: &str, limit: Duration) -> Result<i32> {
    let docker = stack::connect().await?;
    println!("watching run {run} (Ctrl-C to stop)");
    let t0 = std::time::Instant::now();
    live::watch(
        &docker,
        run,
        limit,
        |at, e| {
            let at = at.format("%H:%M:%S");
            let t = t0.elapsed().as_secs_f64();
            match e {
                Event::Alert { alert, from, to } => {
                    println!("{at} +{t:>6.1}s  {alert}: {from} → {to}")
                }
                Event::Card {
                    title,
                    status,
                    http_status,
                } => {
                    println!("{at} +{t:>6.1}s  Teams card ({status}, HTTP {http_status}): {title}")
                }
            }
        },
        firedrill::util::interrupted(),
    )
    .await?;
    Ok(0)
}
