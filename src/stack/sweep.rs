//! What firedrill runs left behind, found by label and removed: a run's
//! containers and network, or every run's.

use super::*;

/// Container ids and network ids of one run, or of every run.
async fn labelled(
    docker: &Docker,
    run_id: Option<&str>,
) -> Result<(Vec<String>, Vec<(String, String)>)> {
    let filters = run_filter(run_id);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: filters.clone(),
            ..Default::default()
        }))
        .await?
        .into_iter()
        .filter_map(|c| c.id)
        .collect();
    let networks = docker
        .list_networks(Some(ListNetworksOptions { filters }))
        .await?
        .into_iter()
        .filter_map(|n| Some((n.id?, n.name.unwrap_or_default())))
        .collect();
    Ok((containers, networks))
}

/// Removes the containers and networks of one run, or of every run.
pub async fn sweep(docker: &Docker, run_id: Option<&str>) -> Result<()> {
    let (containers, networks) = labelled(docker, run_id).await?;
    for id in containers {
        let _ = docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await;
    }
    for (id, name) in networks {
        docker
            .remove_network(&id)
            .await
            .context(Error::Stack, format!("removing network {name}"))?;
    }
    Ok(())
}

/// How many containers and networks are left of one run, or of every run.
pub async fn leftovers(docker: &Docker, run_id: Option<&str>) -> Result<(usize, usize)> {
    let (c, n) = labelled(docker, run_id).await?;
    Ok((c.len(), n.len()))
}
