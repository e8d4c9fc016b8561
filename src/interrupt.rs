//! Ctrl-C handling: the first press asks the sweep to stop starting new work; the second
//! exits at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::exit::ExitStatus;

/// A shared view of whether the user pressed Ctrl-C.
#[derive(Debug, Clone)]
pub struct Interrupt {
    pressed: Arc<AtomicBool>,
    receiver: watch::Receiver<bool>,
}

impl Interrupt {
    /// Starts listening for Ctrl-C; must be called inside the runtime.
    pub fn install() -> Interrupt {
        let pressed = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = watch::channel(false);
        let flag = Arc::clone(&pressed);
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if flag.swap(true, Ordering::SeqCst) {
                    eprintln!("imds-sweep: interrupted again, exiting now");
                    std::process::exit(i32::from(ExitStatus::Interrupted.code()));
                }
                eprintln!("imds-sweep: interrupted; press Ctrl-C again to exit at once");
                let _ = sender.send(true);
            }
        });
        Interrupt { pressed, receiver }
    }

    /// Whether Ctrl-C has been pressed.
    pub fn is_set(&self) -> bool {
        self.pressed.load(Ordering::SeqCst)
    }

    /// Runs `work` unless Ctrl-C comes first, in which case the work is dropped mid-flight.
    pub async fn race<T>(&self, work: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            result = work => Some(result),
            () = self.wait() => None,
        }
    }

    /// Says that nothing was changed, and returns the status for it.
    pub fn stopped_before_changes(when: &str) -> ExitStatus {
        eprintln!("Interrupted {when}: nothing was changed.");
        ExitStatus::Interrupted
    }

    /// Resolves when Ctrl-C is pressed.
    pub async fn wait(&self) {
        let mut receiver = self.receiver.clone();
        if receiver.wait_for(|pressed| *pressed).await.is_err() {
            // The listener is gone, so no interrupt can come any more.
            std::future::pending::<()>().await;
        }
    }
}
