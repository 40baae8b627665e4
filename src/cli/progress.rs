//! Progress bars for a drill's long waits, on a terminal only; lines told
//! while bars are drawn go above them.

use firedrill::drill::Progress;
use std::time::Duration;

/// The bars of one run (a [`Progress`] for the library).
#[derive(Clone)]
pub(crate) struct Bars(indicatif::MultiProgress);

impl Bars {
    /// Bars when stderr is a terminal; none in a log.
    pub(crate) fn on_terminal() -> Option<Bars> {
        use std::io::IsTerminal;
        std::io::stderr()
            .is_terminal()
            .then(|| Bars(indicatif::MultiProgress::new()))
    }

    /// Prints a line: above the bars when there are any.
    pub(crate) fn say(bars: Option<&Bars>, text: &str) {
        match bars {
            Some(b) => {
                b.0.println(text.trim_end()).ok();
            }
            None => print!("{text}"),
        }
    }
}

impl Progress for Bars {
    fn wait(&self, what: String, bound: Duration) -> Box<dyn Send> {
        Box::new(WaitBar::start(&self.0, what, bound))
    }
}

/// A progress bar for a long wait, drawn while it lives and cleared when
/// dropped; it fills with time towards the wait's bound.
struct WaitBar {
    bar: indicatif::ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl WaitBar {
    fn start(on: &indicatif::MultiProgress, what: String, bound: Duration) -> WaitBar {
        let bar = on.add(indicatif::ProgressBar::new(bound.as_millis() as u64));
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "  {spinner} {msg:60!} [{bar:24}] {elapsed:>4} of {prefix}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(firedrill::util::secs(bound));
        bar.set_message(what);
        let b = bar.clone();
        let t0 = std::time::Instant::now();
        let ticker = tokio::spawn(async move {
            loop {
                b.set_position(t0.elapsed().as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        WaitBar { bar, ticker }
    }
}

impl Drop for WaitBar {
    fn drop(&mut self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
