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
    /// Write a profile from a live `/metrics` of this machine: families,
    /// types, labels, buckets and the values seen; routes are yours to add.
    Record {
        /// http://127.0.0.1:PORT/metrics
        url: String,
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The profile's name.
        #[arg(long, default_value = "recorded")]
        name: String,
    },
    /// Write a profile for a service of a stack from what its rules and
    /// dashboards select of it, to drill its alerts before it runs anywhere.
    Infer {
        /// The stack file.
        stack: PathBuf,
        /// The service whose metrics are inferred.
        #[arg(long)]
        service: String,
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
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
        FixtureCommand::Record { url, out, name } => {
            let (p, notes) = fixture::record::record(&url, &name).await?;
            emit(
                &fixture::record::to_yaml(&p, &notes, "recorded")?,
                &p,
                &notes,
                out.as_deref(),
            )?;
        }
        FixtureCommand::Infer {
            stack,
            service,
            out,
        } => {
            let st = firedrill::spec::stack::Stack::load(&stack)?;
            let (p, notes) = fixture::infer::infer(&st, &service)?;
            emit(
                &fixture::record::to_yaml(&p, &notes, "inferred")?,
                &p,
                &notes,
                out.as_deref(),
            )?;
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

/// Writes a made profile to `out` (else standard output), and its notes.
fn emit(yaml: &str, p: &Profile, notes: &[String], out: Option<&Path>) -> Result<()> {
    match out {
        Some(path) => {
            super::write(path, yaml.to_string())?;
            eprintln!(
                "wrote {}: {} families, {} route(s) to check",
                path.display(),
                p.families.len(),
                p.routes.len()
            );
        }
        None => print!("{yaml}"),
    }
    for n in notes {
        eprintln!("note: {n}");
    }
    Ok(())
}

pub(crate) async fn teams_mock(listen: &str, token_file: &Path) -> Result<i32> {
    let token = std::fs::read_to_string(token_file).map_err(Error::io(token_file))?;
    fixture::teams::serve_mock(listen, token.trim().to_string()).await?;
    Ok(0)
}
