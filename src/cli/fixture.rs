//! `firedrill fixture` and `firedrill teams-mock`: the synthetic services,
//! as they run inside the fixture image.

use clap::Subcommand;
use firedrill::spec::fixture::Profile;
use firedrill::{fixture, Error, Result};
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub(crate) enum FixtureCommand {
    /// Serve a profile.
    Serve {
        #[arg(long)]
        profile: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        /// A variant of the profile (e.g. `v0` for vllm).
        #[arg(long)]
        variant: Option<String>,
    },
    /// Validate a profile and every variant it declares.
    Check { profile: PathBuf },
}

pub(crate) async fn run(command: FixtureCommand) -> Result<i32> {
    match command {
        FixtureCommand::Serve {
            profile,
            listen,
            variant,
        } => {
            let p = Profile::load_variant(&profile, variant.as_deref())?;
            fixture::serve_fixture(p, &listen).await?;
        }
        FixtureCommand::Check { profile } => {
            let p = Profile::load(&profile)?;
            let variants: Vec<_> = p.variants.keys().cloned().collect();
            println!(
                "ok {}: {} families, {} routes{}",
                profile.display(),
                p.families.len(),
                p.routes.len(),
                if variants.is_empty() {
                    String::new()
                } else {
                    format!(", variants: {}", variants.join(", "))
                }
            );
        }
    }
    Ok(0)
}

pub(crate) async fn teams_mock(listen: &str, token_file: &Path) -> Result<i32> {
    let token = std::fs::read_to_string(token_file).map_err(Error::io(token_file))?;
    fixture::teams::serve_mock(listen, token.trim().to_string()).await?;
    Ok(0)
}
