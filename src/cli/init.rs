//! `firedrill init`: drills from a stack's rules, or a stack (and its
//! drills) from a docker-compose file.

use firedrill::init::{self, import::Own, Written};
use firedrill::Result;
use std::path::{Path, PathBuf};

pub(crate) fn run(
    stack: Option<PathBuf>,
    compose: Option<PathBuf>,
    out: Option<PathBuf>,
    own: Own,
) -> Result<i32> {
    if let Some(compose) = compose {
        let out = out.unwrap_or_else(|| PathBuf::from("firedrill"));
        let done = init::import::import(&compose, &out, own)?;
        println!("wrote {}", done.stack.display());
        for f in &done.fixtures {
            println!("wrote {}", f.display());
        }
        for (f, why) in &done.rewritten {
            println!("wrote {} ({why})", f.display());
        }
        for n in &done.notes {
            println!("note: {n}");
        }
        for (svc, why) in &done.unmapped {
            println!("not mapped: {svc}: {why}");
        }
        drills(&done.drills, &out.join("scenarios"));
        println!(
            "{} service(s) left out; run the drills: firedrill drill {}",
            done.unmapped.len(),
            out.join("scenarios").display()
        );
        return Ok(0);
    }
    let stack = stack.expect("clap requires --stack without --compose");
    let out = out.unwrap_or_else(|| PathBuf::from("firedrill/scenarios"));
    drills(&init::write_drills(&stack, &out)?, &out);
    Ok(0)
}

fn drills(w: &Written, out: &Path) {
    for f in &w.files {
        println!("wrote {}", f.display());
    }
    for (alert, why) in &w.unclassified {
        println!("no drill for {alert}: {why}");
    }
    println!(
        "{} drill(s) written, {} alert(s) without one; check them: firedrill check {}",
        w.files.len(),
        w.unclassified.len(),
        out.display()
    );
}
