//! One container of a running stack: made from its settings, its files
//! copied in and started; stopped, killed, paused, removed and started (or
//! made) again, as chaos and a shared stack's reset ask; its state and logs.

use super::*;

impl Running {
    /// Creates a container from its settings; its id.
    pub(super) async fn create(
        &self,
        name: &str,
        container_name: &str,
        image: &str,
        config: Config<String>,
    ) -> Result<String> {
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: container_name.to_string(),
                    platform: None,
                }),
                config,
            )
            .await;
        Ok(created
            .context(
                Error::Stack,
                format!(
                    "creating {name} (container {container_name}) from {image}{}",
                    match container_name.starts_with("firedrill-") {
                        true => "",
                        // A name of the stack file's: another run may hold it.
                        false => "; if another run left a container of this name, `firedrill down --all` removes it",
                    }
                ),
            )?
            .id)
    }

    /// Copies a container's files (a tar body) in and starts it.
    pub(super) async fn put_files_and_start(
        &self,
        name: &str,
        id: &str,
        tar: Vec<u8>,
    ) -> Result<()> {
        if !tar.is_empty() {
            self.upload_tar(id, tar).await?;
        }
        self.docker
            .start_container(id, None::<StartContainerOptions<String>>)
            .await
            .context(Error::Stack, format!("starting {name}"))
    }

    /// Whether `name`'s container is running.
    pub async fn is_running(&self, name: &str) -> Result<bool> {
        let s = self.service(name)?;
        match self.docker.inspect_container(&s.container, None).await {
            Ok(i) => Ok(i.state.and_then(|s| s.running).unwrap_or(false)),
            // Removed by chaos: not running.
            Err(e) if is_absent(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// What Docker's healthcheck says of `name` now, and the output of its
    /// last check (`None` when the container has no healthcheck).
    pub(crate) async fn health(
        &self,
        name: &str,
    ) -> Result<Option<(bollard::models::HealthStatusEnum, String)>> {
        let s = self.service(name)?;
        let i = self.docker.inspect_container(&s.container, None).await?;
        Ok(i.state.and_then(|s| s.health).map(|h| {
            let last = h
                .log
                .and_then(|l| l.last().and_then(|r| r.output.clone()))
                .unwrap_or_default();
            (
                h.status.unwrap_or(bollard::models::HealthStatusEnum::EMPTY),
                last,
            )
        }))
    }

    /// The longest Docker's healthcheck of `name` may take to call it
    /// healthy or unhealthy: its start period, then `retries` + 1 checks,
    /// each an interval and a timeout (Docker's defaults where unset: 30 s,
    /// 30 s, 3), plus 5 s.
    pub(crate) async fn health_window(&self, name: &str) -> Result<Duration> {
        let s = self.service(name)?;
        let i = self.docker.inspect_container(&s.container, None).await?;
        let h = i.config.and_then(|c| c.healthcheck).unwrap_or_default();
        let ns = |v: Option<i64>, default: u64| match v {
            Some(n) if n > 0 => Duration::from_nanos(n as u64),
            _ => Duration::from_secs(default),
        };
        let checks = h.retries.filter(|r| *r > 0).unwrap_or(3) as u32 + 1;
        let start = h
            .start_period
            .map_or(Duration::ZERO, |n| Duration::from_nanos(n.max(0) as u64));
        Ok(start + checks * (ns(h.interval, 30) + ns(h.timeout, 30)) + Duration::from_secs(5))
    }

    /// The last `lines` lines of `name`'s container log (empty if it cannot be read).
    pub async fn logs(&self, name: &str, lines: usize) -> String {
        let Ok(s) = self.service(name) else {
            return String::new();
        };
        let mut out = String::new();
        let mut st = self.docker.logs::<String>(
            &s.container,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: lines.to_string(),
                ..Default::default()
            }),
        );
        while let Some(Ok(l)) = st.next().await {
            match l {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => {
                    out.push_str(&String::from_utf8_lossy(&message))
                }
                _ => {}
            }
        }
        out
    }

    /// Stops `name`'s container: SIGTERM, then SIGKILL after 5 s.
    pub async fn stop(&self, name: &str) -> Result<()> {
        let s = self.service(name)?;
        self.docker
            .stop_container(&s.container, Some(StopContainerOptions { t: 5 }))
            .await?;
        Ok(())
    }

    /// Kills `name`'s container with SIGKILL.
    pub async fn kill(&self, name: &str) -> Result<()> {
        let s = self.service(name)?;
        self.docker
            .kill_container(
                &s.container,
                Some(KillContainerOptions { signal: "SIGKILL" }),
            )
            .await?;
        Ok(())
    }

    /// Restarts `name`'s container: SIGTERM, SIGKILL after 5 s, started again.
    pub async fn restart(&self, name: &str) -> Result<()> {
        let s = self.service(name)?;
        self.docker
            .restart_container(&s.container, Some(RestartContainerOptions { t: 5 }))
            .await?;
        Ok(())
    }

    /// Starts `name`'s container again; one that chaos removed is made
    /// again first, from its settings and files, as `docker compose up` would.
    pub async fn start(&self, name: &str) -> Result<()> {
        let s = self.service(name)?;
        let started = self
            .docker
            .start_container(&s.container, None::<StartContainerOptions<String>>)
            .await;
        match started {
            Err(e) if is_absent(&e) => {
                let made = self.made.lock().expect("made lock").get(name).cloned();
                let (config, tar) =
                    made.ok_or_else(|| err!(Stack, "{name}: no settings to make it again"))?;
                let image = config.image.clone().unwrap_or_default();
                let id = self.create(name, &s.container, &image, config).await?;
                self.put_files_and_start(name, &id, tar).await
            }
            other => Ok(other?),
        }
    }

    /// Removes `name`'s container (killed first), as `docker rm -f` does;
    /// `start` makes it again.
    pub async fn remove(&self, name: &str) -> Result<()> {
        let s = self.service(name)?;
        let force = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        self.docker
            .remove_container(&s.container, Some(force))
            .await?;
        Ok(())
    }

    /// Pauses `name`'s container (its processes freeze).
    pub async fn pause(&self, name: &str) -> Result<()> {
        let s = self.service(name)?;
        self.docker.pause_container(&s.container).await?;
        Ok(())
    }

    /// Resumes `name`'s paused container.
    pub async fn unpause(&self, name: &str) -> Result<()> {
        let s = self.service(name)?;
        self.docker.unpause_container(&s.container).await?;
        Ok(())
    }
}

/// Whether Docker answered that the container does not exist.
pub(super) fn is_absent(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
