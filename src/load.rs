//! HTTP load with goose, bounded in rate, count and time. A drill runs it
//! as a child process (`firedrill load`): goose installs its own Ctrl-C
//! handler and logger, which must not replace the drill's (Ctrl-C there
//! tears the stack down).

use anyhow::{anyhow, bail, Context, Result};
use goose::config::GooseConfiguration;
use goose::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds, whatever a scenario asks: every load loop ends.
pub const MAX_RATE: f64 = 2000.0;
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadPlan {
    pub url: String,
    /// GET, or POST/PUT with `body` (JSON) as the route expects.
    pub method: String,
    pub path: String,
    pub body: Option<String>,
    /// Requests per second.
    pub rate: f64,
    pub duration: Duration,
}

/// What the client saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadSummary {
    pub requests: usize,
    pub failures: usize,
    pub status_codes: BTreeMap<u16, usize>,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub seconds: usize,
}

impl LoadPlan {
    fn check(&self) -> Result<()> {
        if !(self.rate > 0.0 && self.rate <= MAX_RATE) {
            bail!("load rate {} is outside (0, {MAX_RATE}]/s", self.rate);
        }
        if self.duration > MAX_DURATION {
            bail!(
                "load duration {:?} is above {MAX_DURATION:?}",
                self.duration
            );
        }
        let host = self
            .url
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split([':', '/'])
            .next()
            .unwrap_or("");
        // Traffic goes to this machine only (the stack's published ports).
        if !(host == "localhost" || host.starts_with("127.") || host == "[::1]") {
            bail!("load goes to 127.0.0.1 only, not {}", self.url);
        }
        Ok(())
    }
}

/// Runs the load in this process with goose (the `firedrill load` command).
pub async fn run_goose(plan: &LoadPlan) -> Result<LoadSummary> {
    plan.check()?;
    let mut cfg = GooseConfiguration::default();
    cfg.host = Some(plan.url.clone());
    // Enough users for slow answers: at rate r and latency L, r×L requests
    // are in flight (16 s of latency at full rate); the throttle keeps the rate.
    let users = ((plan.rate * 16.0).ceil() as usize).clamp(4, 512);
    cfg.users = Some(users);
    cfg.increase_rate = Some(users.to_string());
    cfg.run_time = Some(plan.duration.as_secs().max(1).to_string());
    cfg.throttle_requests = Some(plan.rate.ceil().max(1.0) as usize);
    cfg.no_print_metrics = true;
    cfg.no_error_summary = true;
    cfg.quiet = 1;
    cfg.no_telnet = true;
    cfg.no_websocket = true;
    // Longer than any latency a drill injects: a request the client gives
    // up on is never observed by the service's histograms.
    cfg.timeout = Some("60".into());
    let path: Arc<str> = plan.path.clone().into();
    let name = format!("{} {}", plan.method, plan.path);
    let method = match plan.method.to_ascii_uppercase().as_str() {
        "GET" => GooseMethod::Get,
        "POST" => GooseMethod::Post,
        "PUT" => GooseMethod::Put,
        "PATCH" => GooseMethod::Patch,
        "DELETE" => GooseMethod::Delete,
        "HEAD" => GooseMethod::Head,
        m => bail!("load cannot send method {m}"),
    };
    let body: Arc<str> = plan.body.clone().unwrap_or_default().into();
    let tx = Transaction::new(Arc::new(move |user: &mut GooseUser| {
        let (p, body, method) = (path.clone(), body.clone(), method);
        Box::pin(async move {
            let mut rb = user
                .get_request_builder(&method, &p)?
                .header("content-type", "application/json");
            if !body.is_empty() {
                rb = rb.body(body.to_string());
            }
            let req = GooseRequest::builder()
                .method(method)
                .path(&*p)
                .set_request_builder(rb)
                .build();
            // A failed request is data (counted), not a reason to stop.
            let _ = user.request(req).await;
            Ok(())
        })
    }))
    .set_name(&name);
    let metrics = GooseAttack::initialize_with_config(cfg)?
        .register_scenario(scenario!("drill").register_transaction(tx))
        .execute()
        .await
        .map_err(|e| anyhow!("goose: {e}"))?;
    let mut s = LoadSummary {
        seconds: metrics.duration,
        ..Default::default()
    };
    for agg in metrics.requests.values() {
        s.requests += agg.success_count + agg.fail_count;
        s.failures += agg.fail_count;
        for (code, n) in &agg.status_code_counts {
            *s.status_codes.entry(*code).or_default() += n;
        }
        s.p50_ms = agg.raw_data.percentile_us(0.50) as f64 / 1000.0;
        s.p95_ms = agg.raw_data.percentile_us(0.95) as f64 / 1000.0;
        s.p99_ms = agg.raw_data.percentile_us(0.99) as f64 / 1000.0;
    }
    Ok(s)
}

/// A load running in a child process; killed when dropped.
pub struct Background {
    child: tokio::process::Child,
    pub plan: LoadPlan,
}

impl Background {
    pub fn start(plan: LoadPlan) -> Result<Background> {
        plan.check()?;
        let bin = crate::images::firedrill_binary()?;
        let dir = std::env::temp_dir().join("firedrill-load");
        std::fs::create_dir_all(&dir)?;
        let child = tokio::process::Command::new(bin)
            .arg("load")
            .arg("--plan")
            .arg(serde_json::to_string(&plan)?)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the load process")?;
        Ok(Background { child, plan })
    }

    /// Asks the load to stop (goose stops on SIGINT and reports).
    fn interrupt(&self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child's pid; no memory is touched.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGINT);
            }
        }
    }

    /// Stops the load now and collects what the client saw. Bounded: a load
    /// that does not stop within 15 s is killed (on drop).
    pub async fn stop(self) -> Result<LoadSummary> {
        self.interrupt();
        let out = tokio::time::timeout(Duration::from_secs(15), self.child.wait_with_output())
            .await
            .map_err(|_| anyhow!("the load process did not stop on SIGINT; killed"))??;
        if !out.status.success() {
            bail!(
                "the load process failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or("{}");
        Ok(serde_json::from_str(last)?)
    }
}
