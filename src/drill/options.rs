//! How drills are run: the options a caller sets (images, sharing,
//! parallelism, retries) and where the drill tells what happens (events,
//! progress bars).

use crate::images::{self, ImageSource};
use crate::report::Event;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Draws the drill's long waits (the CLI: progress bars on a terminal).
pub trait Progress: Send + Sync {
    /// A wait of up to `bound` began; it is over when the returned guard is
    /// dropped.
    fn wait(&self, what: String, bound: Duration) -> Box<dyn Send>;
}

/// What is told of each wave, step and drill as it happens.
pub type OnEvent = Box<dyn Fn(Event<'_>) + Send + Sync>;

/// How to run drills; build it from [`Options::default`] with its setters:
///
/// ```
/// use firedrill::{ImageSource, Options};
/// let opts = Options::default().images(ImageSource::Offline).retries(1).fail_fast(true);
/// # let _ = opts;
/// ```
pub struct Options {
    pub(crate) images: ImageSource,
    pub(crate) stack: Option<PathBuf>,
    pub(crate) attach: Option<PathBuf>,
    pub(crate) fail_fast: bool,
    pub(crate) share: bool,
    pub(crate) jobs: usize,
    pub(crate) stacks: usize,
    pub(crate) retries: u32,
    /// The images, made present by the first drill and reused by the next.
    pub(crate) prepared: tokio::sync::OnceCell<images::Images>,
    pub(crate) on_event: OnEvent,
    pub(crate) progress: Option<Arc<dyn Progress>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            images: ImageSource::Auto,
            stack: None,
            attach: None,
            fail_fast: false,
            share: true,
            jobs: 4,
            stacks: 2,
            retries: 0,
            prepared: tokio::sync::OnceCell::new(),
            on_event: Box::new(|_| {}),
            progress: None,
        }
    }
}

impl Options {
    /// Where the component images come from (default: pulled, else built
    /// offline from Debian packages).
    pub fn images(mut self, source: ImageSource) -> Self {
        self.images = source;
        self
    }
    /// Run the scenarios against this stack file instead of their own.
    pub fn stack(mut self, stack: Option<PathBuf>) -> Self {
        self.stack = stack;
        self
    }
    /// Drill a stack that is already running, as its attach file
    /// describes ([`crate::spec::attach`]), instead of bringing one up.
    pub fn attach(mut self, file: Option<PathBuf>) -> Self {
        self.attach = file;
        self
    }

    /// Stop a drill at its first failed step (the rest are not run).
    pub fn fail_fast(mut self, yes: bool) -> Self {
        self.fail_fast = yes;
        self
    }
    /// Drill the scenarios whose stacks render alike on one stack, brought
    /// up once and reset between waves (default; `false`: a stack per drill).
    pub fn share(mut self, yes: bool) -> Self {
        self.share = yes;
        self
    }
    /// At most this many drills at once on a shared stack; only drills
    /// that cannot disturb each other run together (see [`crate::suite`]).
    pub fn jobs(mut self, n: usize) -> Self {
        self.jobs = n;
        self
    }
    /// At most this many stacks up at once, each running its own drills; a
    /// drill with a fault the whole machine feels (a CPU or memory burn)
    /// runs with no other drill on the machine.
    pub fn stacks(mut self, n: usize) -> Self {
        self.stacks = n;
        self
    }
    /// Run a failed or inconclusive drill again, up to this many times, on
    /// a reset stack; one that then passes is FLAKY.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }
    /// Told of each wave, step and drill as it happens (the CLI prints them).
    pub fn on_event(mut self, f: impl Fn(Event<'_>) + Send + Sync + 'static) -> Self {
        self.on_event = Box::new(f);
        self
    }
    /// Where long waits are drawn (default: nowhere).
    pub fn progress(mut self, p: Arc<dyn Progress>) -> Self {
        self.progress = Some(p);
        self
    }
}
