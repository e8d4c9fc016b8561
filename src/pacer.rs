//! Pacing of EC2 calls: a global cap on requests in flight, a cap per account-region, and
//! token buckets per account, region and action class that mirror how EC2 throttles, so that
//! a large sweep runs near the limits instead of into them.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

/// EC2's request classes, each with its own bucket per account and region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionClass {
    /// Describe* calls: 100 tokens, 20 a second.
    Describe,
    /// ModifyInstanceMetadataOptions: 100 tokens, 5 a second.
    ModifyMetadata,
}

impl ActionClass {
    fn quota(self) -> Quota {
        let (burst, per_second) = match self {
            ActionClass::Describe => (100, 20),
            ActionClass::ModifyMetadata => (100, 5),
        };
        let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(nonzero(per_second)).allow_burst(nonzero(burst))
    }
}

type Pair = (String, String);

/// Shared by every EC2 client of a run.
pub struct Pacer {
    global: Semaphore,
    global_cap: usize,
    per_pair: usize,
    pairs: Mutex<HashMap<Pair, Arc<Semaphore>>>,
    describe: DefaultKeyedRateLimiter<Pair>,
    modify: DefaultKeyedRateLimiter<Pair>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").field("per_pair", &self.per_pair).finish_non_exhaustive()
    }
}

/// Requests in flight for one account-region at most (never more than the global cap).
const PER_PAIR: usize = 8;

impl Pacer {
    /// A pacer allowing `concurrency` requests in flight in all.
    pub fn new(concurrency: usize) -> Arc<Pacer> {
        let concurrency = concurrency.max(1);
        Arc::new(Pacer {
            global: Semaphore::new(concurrency),
            global_cap: concurrency,
            per_pair: PER_PAIR.min(concurrency),
            pairs: Mutex::new(HashMap::new()),
            describe: RateLimiter::keyed(ActionClass::Describe.quota()),
            modify: RateLimiter::keyed(ActionClass::ModifyMetadata.quota()),
        })
    }

    /// Runs `call` once a token of its bucket and a place in flight are free. The token is
    /// taken first, so that waiting for a bucket never holds a place another call could use.
    pub async fn run<T>(
        &self,
        account: &str,
        region: &str,
        class: ActionClass,
        call: impl Future<Output = T>,
    ) -> T {
        let key = (account.to_owned(), region.to_owned());
        let bucket = match class {
            ActionClass::Describe => &self.describe,
            ActionClass::ModifyMetadata => &self.modify,
        };
        bucket.until_key_ready(&key).await;
        let pair = self.pair(key);
        let _pair = pair.acquire().await;
        let _global = self.global.acquire().await;
        call.await
    }

    /// Requests in flight at most, in all.
    pub fn global_cap(&self) -> usize {
        self.global_cap
    }

    /// Holds one of the global places while `call` runs (for calls outside EC2's buckets).
    pub async fn run_global<T>(&self, call: impl Future<Output = T>) -> T {
        let _global = self.global.acquire().await;
        call.await
    }

    fn pair(&self, key: Pair) -> Arc<Semaphore> {
        let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(pairs.entry(key).or_insert_with(|| Arc::new(Semaphore::new(self.per_pair))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrency_one_runs_one_call_at_a_time() {
        let pacer = Pacer::new(1);
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let calls = (0..6).map(|i| {
            let region = if i % 2 == 0 { "eu-west-1" } else { "us-east-1" };
            pacer.run("1", region, ActionClass::Describe, async {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
            })
        });
        futures_util::future::join_all(calls).await;
        assert_eq!(peak.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn buckets_start_full_and_are_kept_per_account_and_region() {
        let pacer = Pacer::new(4);
        let key = |a: &str, r: &str| (a.to_owned(), r.to_owned());
        for _ in 0..100 {
            assert!(pacer.modify.check_key(&key("1", "eu-west-1")).is_ok());
        }
        assert!(pacer.modify.check_key(&key("1", "eu-west-1")).is_err(), "burst spent");
        assert!(pacer.modify.check_key(&key("1", "us-east-1")).is_ok(), "another region");
        assert!(pacer.modify.check_key(&key("2", "eu-west-1")).is_ok(), "another account");
        assert!(pacer.describe.check_key(&key("1", "eu-west-1")).is_ok(), "another class");
    }
}
