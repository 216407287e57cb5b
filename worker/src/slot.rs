//! Job slots (`docs/dispatch.md` §3): a slot is held from a job's claim
//! until its processes end, and the delivery loop hears the moment one
//! frees, so the next held job starts then rather than at the next tick.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// The worker's slots; clones share them.
#[derive(Clone)]
pub struct SlotPool {
    permits: Arc<Semaphore>,
    freed: Arc<Notify>,
    size: usize,
    /// Slots taken by jobs still being prepared (cloned): jobs go on deck
    /// only once there are none, so that a burst's first jobs do not share
    /// the cores with the clones of the jobs behind them.
    preparing: Arc<AtomicUsize>,
}

/// One slot, taken; frees itself when dropped.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
    preparing: Option<Arc<AtomicUsize>>,
}

impl SlotPool {
    pub fn new(size: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(size)),
            freed: Arc::new(Notify::new()),
            size,
            preparing: Arc::default(),
        }
    }

    /// A slot for a job yet to be prepared: it counts as preparing until
    /// `Slot::prepared` or its drop.
    pub fn try_take(&self) -> Option<Slot> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        self.preparing.fetch_add(1, Ordering::SeqCst);
        Some(Slot {
            permit: Some(permit),
            freed: self.freed.clone(),
            preparing: Some(self.preparing.clone()),
        })
    }

    /// Waits for a slot. Waiters are served first come, first served, and
    /// before `try_take`: a freed slot goes to a job on deck, not to a job
    /// the loop would start instead (tokio's semaphore is fair).
    pub async fn take(&self) -> Slot {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the slots' semaphore is never closed");
        Slot {
            permit: Some(permit),
            freed: self.freed.clone(),
            preparing: None,
        }
    }

    /// Slots whose jobs are still being prepared.
    pub fn preparing(&self) -> usize {
        self.preparing.load(Ordering::SeqCst)
    }

    /// Wakes the delivery loop as a freed slot would.
    pub fn wake(&self) {
        self.freed.notify_one();
    }

    pub fn free(&self) -> usize {
        self.permits.available_permits()
    }

    pub fn busy(&self) -> usize {
        self.size - self.free()
    }

    /// Resolves once a slot was freed since the last call (a slot freed
    /// while nobody waited is not missed: `Notify` keeps one wake-up).
    pub async fn freed(&self) {
        self.freed.notified().await
    }
}

impl Slot {
    /// Its job is prepared: the loop may put the next ones on deck.
    pub fn prepared(&mut self) {
        if let Some(count) = self.preparing.take() {
            count.fetch_sub(1, Ordering::SeqCst);
            self.freed.notify_one();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(count) = self.preparing.take() {
            count.fetch_sub(1, Ordering::SeqCst);
        }
        // The permit goes back before the wake-up, so the woken loop finds
        // it free.
        drop(self.permit.take());
        self.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_freed_slot_wakes_the_waiter_and_is_free_again() {
        let pool = SlotPool::new(2);
        let a = pool.try_take().unwrap();
        let _b = pool.try_take().unwrap();
        assert!(pool.try_take().is_none());
        assert_eq!(pool.busy(), 2);
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), pool.freed())
            .await
            .expect("the free was not heard");
        assert_eq!(pool.free(), 1);
        assert!(pool.try_take().is_some());
    }

    #[tokio::test]
    async fn a_slot_counts_as_preparing_until_its_job_is_prepared_or_it_is_dropped() {
        let pool = SlotPool::new(3);
        let mut a = pool.try_take().unwrap();
        let b = pool.try_take().unwrap();
        assert_eq!(pool.preparing(), 2);
        a.prepared();
        assert_eq!(pool.preparing(), 1);
        tokio::time::timeout(Duration::from_secs(1), pool.freed())
            .await
            .expect("the end of a preparation wakes the loop");
        a.prepared();
        assert_eq!(pool.preparing(), 1, "counted once");
        drop(b);
        assert_eq!(pool.preparing(), 0);
        drop(a);
        let waited = pool.take().await;
        assert_eq!(
            pool.preparing(),
            0,
            "a slot waited for is for a prepared job"
        );
        drop(waited);
    }

    #[tokio::test]
    async fn no_wake_up_without_a_free() {
        let pool = SlotPool::new(1);
        let _a = pool.try_take().unwrap();
        let waited = tokio::time::timeout(Duration::from_millis(50), pool.freed()).await;
        assert!(waited.is_err());
    }
}
