//! `firedrill down`: remove what firedrill runs left behind, by label.

use firedrill::{stack, Error, Result};

pub(crate) async fn run(all: bool, run: Option<String>) -> Result<i32> {
    let docker = stack::connect().await?;
    let before = stack::leftovers(&docker, None).await?;
    match (all, run) {
        (_, Some(id)) => stack::sweep(&docker, Some(&id)).await?,
        (true, None) => stack::sweep(&docker, None).await?,
        (false, None) => return Err(Error::Invalid("say --all or --run ID".into())),
    }
    let after = stack::leftovers(&docker, None).await?;
    println!(
        "removed {} container(s), {} network(s), {} volume(s)",
        before.containers - after.containers,
        before.networks - after.networks,
        before.volumes - after.volumes
    );
    Ok(0)
}
