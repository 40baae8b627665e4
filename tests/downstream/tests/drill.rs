//! A real drill from a user's own `cargo test`: the stack comes up in
//! containers, the backend is stopped, BackendDown must fire and reach
//! Teams, and nothing is left running.

use firedrill::{stack, suite, ImageSource, Options, Verdict};
use std::path::Path;

#[tokio::test(flavor = "multi_thread")]
async fn backend_down_rings_the_alarm() {
    // The fixture image needs a firedrill binary; cargo builds none for a
    // dependency, so the library builds its own (into target/firedrill-bin).
    assert!(std::env::var_os("FIREDRILL_BIN").is_none());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let scenario = repo.join("scenarios/backend-down.yaml");

    // Validation alone needs no Docker: bad input is refused here.
    let checked = firedrill::drill::check(&scenario, None);
    assert!(checked.is_ok(), "{}", checked.err().unwrap());

    let opts = Options::default().images(ImageSource::Offline);
    let report = suite::run_one(&scenario, &opts)
        .await
        .expect("the drill runs");
    println!("{}", report.render());
    assert_eq!(report.verdict, Verdict::Passed, "{}", report.render());

    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/firedrill-bin/debug/firedrill");
    assert!(built.is_file(), "{} was not built", built.display());

    let docker = stack::connect().await.expect("Docker");
    let left = stack::leftovers(&docker, Some(&report.run_id))
        .await
        .expect("a listing");
    assert!(left.is_none(), "left behind: {left:?}");
}
