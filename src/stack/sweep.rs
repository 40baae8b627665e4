//! What firedrill runs left behind, found by label and removed: a run's
//! containers, network and volumes, or every run's.

use super::*;
use bollard::volume::{ListVolumesOptions, RemoveVolumeOptions};

/// What is left of one run, or of every run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Containers, running or not.
    pub containers: usize,
    /// Networks.
    pub networks: usize,
    /// Volumes.
    pub volumes: usize,
}

impl Leftovers {
    /// Nothing is left.
    pub fn is_none(&self) -> bool {
        *self == Leftovers::default()
    }
}

/// Container ids, network ids and volume names of one run, or of every run.
async fn labelled(
    docker: &Docker,
    run_id: Option<&str>,
) -> Result<(Vec<String>, Vec<(String, String)>, Vec<String>)> {
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
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: run_filter(run_id),
        }))
        .await?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    Ok((containers, networks, volumes))
}

/// Removes the containers, networks and volumes of one run, or of every run.
pub async fn sweep(docker: &Docker, run_id: Option<&str>) -> Result<()> {
    let (containers, networks, volumes) = labelled(docker, run_id).await?;
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
    // After the containers: a volume in use cannot go.
    for name in volumes {
        docker
            .remove_volume(&name, Some(RemoveVolumeOptions { force: true }))
            .await
            .context(Error::Stack, format!("removing volume {name}"))?;
    }
    Ok(())
}

/// What is left of one run, or of every run.
pub async fn leftovers(docker: &Docker, run_id: Option<&str>) -> Result<Leftovers> {
    let (c, n, v) = labelled(docker, run_id).await?;
    Ok(Leftovers {
        containers: c.len(),
        networks: n.len(),
        volumes: v.len(),
    })
}
