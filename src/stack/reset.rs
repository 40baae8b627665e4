//! A shared stack's reset between drills: every container back up, each
//! component started over as its row in the components table says
//! (Prometheus' rules reloaded and samples deleted, Alertmanager restarted
//! empty, the fixtures and the Teams mock reset in process).

use super::container::is_absent;
use super::*;

impl Running {
    /// Puts a shared stack back to what a fresh one would be, between
    /// drills, without restarting Prometheus (a restart costs its 5 s
    /// target-discovery delay and more):
    ///
    /// 1. every container running and unpaused;
    /// 2. Prometheus reloads a configuration without rule files: no rule is
    ///    evaluated or sent any more, and the rule state (pending, firing,
    ///    resolved and still re-sent for 15 minutes) is dropped with the groups;
    /// 3. Alertmanager restarts on tmpfs: no aggregation group,
    ///    notification log or silence (a group that flushed once would send
    ///    its next alert at group_interval, not group_wait); then the
    ///    fixtures and the Teams mock start over in process (no fault, no
    ///    series an earlier drill created, no recorded card, and nothing a
    ///    request still in flight from before brings back);
    /// 4. everything ready and every target up;
    /// 5. once a scrape that began before the undo has ended, every sample
    ///    so far is deleted (the TSDB admin API): queries see only the new drill;
    /// 6. the rules come back, with fresh state.
    ///
    /// Exporters and databases keep running. Returns how long it took.
    pub async fn reset(&self, stack: &Stack, eff: &Effective) -> Result<Duration> {
        let started = Instant::now();
        let live: Vec<&Service> = self
            .services
            .values()
            .filter(|s| s.skipped.is_none())
            .collect();
        let back = self.all_running(&live).await?;
        let prom = self.service(&stack.prometheus_service)?;
        let client = crate::observe::Prometheus::new(prom.url());
        self.wait_ready(&prom.name, prom.ready, Duration::from_secs(60))
            .await?;
        let (config_path, config) = eff
            .prometheus_files
            .first()
            .ok_or_else(|| err!(Stack, "no rendered prometheus.yml"))?;
        let rules = |with: bool| -> Result<Vec<(String, Vec<u8>, u32)>> {
            let text = if with {
                config.clone()
            } else {
                render::without_rules(config)?
            };
            Ok(vec![(config_path.clone(), text.into_bytes(), 0o644)])
        };
        self.upload(&prom.container, &rules(false)?, 0).await?;
        client
            .reload()
            .await
            .context(Error::Stack, "Prometheus, without its rules")?;
        // Only those that did not just start again: those are new already.
        let was_up: Vec<&Service> = live
            .iter()
            .copied()
            .filter(|s| !back.iter().any(|b| b.name == s.name))
            .collect();
        self.start_over(&was_up).await?;
        let undone = Instant::now();
        for s in &back {
            self.wait_ready(&s.name, s.ready, Duration::from_secs(60))
                .await?;
        }
        self.wait_targets(stack, eff).await?;
        // A scrape that began before the undo may still append what it saw.
        let (_, timeout) = eff.prometheus.config.slowest_scrape();
        tokio::time::sleep_until((undone + timeout).into()).await;
        client
            .delete_until(chrono::Utc::now())
            .await
            .context(Error::Stack, "clearing Prometheus' samples")?;
        self.upload(&prom.container, &rules(true)?, 0).await?;
        client
            .reload()
            .await
            .context(Error::Stack, "Prometheus, with its rules")?;
        Ok(started.elapsed())
    }

    /// Every container of `live` running and unpaused; those that were
    /// stopped (now starting again).
    async fn all_running<'a>(&self, live: &[&'a Service]) -> Result<Vec<&'a Service>> {
        let mut back = Vec::new();
        for s in live {
            let (state, restarted) = self.settled_state(&s.container).await?;
            if restarted {
                // Its restart policy brought it back (a crash loop's last
                // turn): it comes up new, as a start would.
                back.push(*s);
            } else if state.paused == Some(true) {
                self.unpause(&s.name).await?;
            } else if state.running != Some(true) {
                self.start(&s.name).await?;
                back.push(*s);
            }
        }
        Ok(back)
    }

    /// The container's state once its restart policy has had its turn: a
    /// container between a crash and its restart is waited for (up to a
    /// minute; Docker's back-off doubles from 100 ms), so that it is not
    /// taken for a running one that can be reset in process. Also says
    /// whether it had to wait.
    async fn settled_state(
        &self,
        container: &str,
    ) -> Result<(bollard::models::ContainerState, bool)> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut waited = false;
        loop {
            let state = match self.docker.inspect_container(container, None).await {
                Ok(i) => i.state.unwrap_or_default(),
                // Removed by chaos: stopped, for `start` to make it again.
                Err(e) if is_absent(&e) => Default::default(),
                Err(e) => return Err(e.into()),
            };
            if state.restarting != Some(true) || Instant::now() > deadline {
                return Ok((state, waited));
            }
            waited = true;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Starts `services` over as their components' rows say: those
    /// restarted first (Alertmanager: once it is restarted, nothing of the
    /// last drill can still be on its way to Teams), then those reset in
    /// process (the fixtures and the Teams mock).
    async fn start_over(&self, services: &[&Service]) -> Result<()> {
        let policy = |s: &&&Service, r: Reset| components::of(s.kind).reset == r;
        let restart: Vec<&&Service> = services
            .iter()
            .filter(|s| policy(s, Reset::Restart))
            .collect();
        futures_util::future::try_join_all(restart.iter().map(|s| self.restart(&s.name))).await?;
        for s in &restart {
            self.wait_ready(&s.name, s.ready, Duration::from_secs(60))
                .await?;
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let in_process = services.iter().filter(|s| policy(s, Reset::InProcess));
        futures_util::future::try_join_all(in_process.map(|s| {
            let req = http.post(format!("{}/-/reset", s.url()));
            async move {
                req.send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .context(Error::Stack, format!("resetting {}", s.name))
            }
        }))
        .await?;
        Ok(())
    }

    /// Copies files into a container, owned by `owner`.
    pub(super) async fn upload(
        &self,
        container: &str,
        files: &[(String, Vec<u8>, u32)],
        owner: u32,
    ) -> Result<()> {
        self.upload_tar(container, plan::tar_files(files, owner)?)
            .await
    }

    /// Copies a tar body of files into a container, at its root.
    pub(super) async fn upload_tar(&self, container: &str, tar: Vec<u8>) -> Result<()> {
        self.docker
            .upload_to_container(
                container,
                Some(UploadToContainerOptions {
                    path: "/".to_string(),
                    ..Default::default()
                }),
                tar.into(),
            )
            .await
            .context(Error::Stack, format!("copying files into {container}"))
    }
}
