//! `firedrill images`: make every image present (pull, or build offline).

use firedrill::images::{self, Optional};
use firedrill::{components, stack, ImageSource, Result};

pub(crate) async fn run(source: ImageSource) -> Result<i32> {
    let docker = stack::connect().await?;
    let t = std::time::Instant::now();
    let imgs = images::ensure(&docker, source).await?;
    let name = |k| components::of(k).name;
    for (k, i) in &imgs.pinned {
        println!("{:<18} {i}", name(*k));
    }
    println!("{:<18} {}", "firedrill", imgs.firedrill);
    for (k, i) in &imgs.optional {
        match i {
            Optional::Present(i) => println!("{:<18} {i}", name(*k)),
            Optional::Skipped(why) => println!("{:<18} skipped: {why}", name(*k)),
            Optional::NoGpu(why) => {
                println!(
                    "{:<18} its service's fixture profile plays it: {why}",
                    name(*k)
                )
            }
            Optional::StandIn(i, why) => {
                println!("{:<18} {i} (firedrill's stand-in: {why})", name(*k))
            }
        }
    }
    println!("images ready in {:.1}s", t.elapsed().as_secs_f64());
    Ok(0)
}
