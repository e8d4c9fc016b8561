//! Progress on stderr: a bar when stderr is a terminal, a plain line every few seconds
//! otherwise (for CI logs), nothing with `-q`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the plain-text progress line is printed.
const LINE_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Counts {
    total: AtomicUsize,
    done: AtomicUsize,
    found: AtomicUsize,
    failed: AtomicUsize,
    accounts_total: AtomicUsize,
    accounts_done: AtomicUsize,
}

/// Progress of one phase (scan or enforcement).
#[derive(Debug)]
pub struct Progress {
    phase: &'static str,
    counts: Arc<Counts>,
    bar: Option<ProgressBar>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    Bar,
    Lines,
    Off,
}

impl Display {
    /// A bar on a terminal, lines elsewhere, nothing when quiet.
    pub fn detect(quiet: bool) -> Display {
        use std::io::IsTerminal;
        match (quiet, std::io::stderr().is_terminal()) {
            (true, _) => Display::Off,
            (false, true) => Display::Bar,
            (false, false) => Display::Lines,
        }
    }
}

impl Progress {
    /// Starts showing progress of `phase`; `total` may grow later with [`Progress::grow`].
    pub fn start(phase: &'static str, total: usize, display: Display) -> Progress {
        let counts = Arc::new(Counts::default());
        counts.total.store(total, Ordering::Relaxed);
        let (bar, ticker) = match display {
            Display::Off => (None, None),
            Display::Bar => (Some(bar(phase, total)), None),
            Display::Lines => (None, Some(tokio::spawn(print_lines(phase, Arc::clone(&counts))))),
        };
        Progress { phase, counts, bar, ticker }
    }

    /// More work became known (regions of an account just discovered).
    pub fn grow(&self, more: usize) {
        self.counts.total.fetch_add(more, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc_length(more as u64);
        }
    }

    /// The scan covers `total` accounts.
    pub fn expect_accounts(&self, total: usize) {
        self.counts.accounts_total.store(total, Ordering::Relaxed);
        self.refresh();
    }

    /// Every region of one account scanned (or the account given up).
    pub fn account_scanned(&self) {
        self.counts.accounts_done.fetch_add(1, Ordering::Relaxed);
        self.refresh();
    }

    /// One region scanned, with the instances it held.
    pub fn scanned(&self, instances: usize) {
        self.counts.found.fetch_add(instances, Ordering::Relaxed);
        self.step(false);
    }

    /// One change made (or failed).
    pub fn changed(&self, failed: bool) {
        self.step(failed);
    }

    fn step(&self, failed: bool) {
        self.counts.done.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.counts.failed.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        self.refresh();
    }

    fn refresh(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message(summary(self.phase, &self.counts));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if let Some(ticker) = &self.ticker {
            ticker.abort();
        }
    }
}

fn bar(phase: &'static str, total: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    let template = "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(phase);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn summary(phase: &str, counts: &Counts) -> String {
    let load = |n: &AtomicUsize| n.load(Ordering::Relaxed);
    match phase {
        "scan" => format!(
            "regions of {}/{} accounts, {} instances found",
            load(&counts.accounts_done),
            load(&counts.accounts_total),
            load(&counts.found)
        ),
        _ => format!("changes, {} failed", load(&counts.failed)),
    }
}

async fn print_lines(phase: &'static str, counts: Arc<Counts>) {
    let mut interval = tokio::time::interval(LINE_INTERVAL);
    interval.tick().await;
    loop {
        interval.tick().await;
        let done = counts.done.load(Ordering::Relaxed);
        let total = counts.total.load(Ordering::Relaxed);
        eprintln!("{phase}: {done}/{total} {}", summary(phase, &counts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_accounts_regions_instances_and_failures() {
        let scan = Progress::start("scan", 0, Display::Off);
        scan.expect_accounts(3);
        scan.grow(4);
        scan.scanned(10);
        scan.scanned(5);
        scan.account_scanned();
        assert_eq!(summary("scan", &scan.counts), "regions of 1/3 accounts, 15 instances found");
        assert_eq!(scan.counts.done.load(Ordering::Relaxed), 2);

        let enforce = Progress::start("enforce", 2, Display::Off);
        enforce.changed(false);
        enforce.changed(true);
        assert_eq!(summary("enforce", &enforce.counts), "changes, 1 failed");
    }
}
