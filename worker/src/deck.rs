//! Jobs on deck (`docs/dispatch.md` §4): while every slot is busy, one
//! held job per busy slot is claimed and prepared, and starts the moment a
//! slot frees; the delivery loop releases one that waits too long while a
//! peer has a free slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::JobId;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::slot::{Slot, SlotPool};

/// Why a job on deck is asked to give its claim back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// A peer has a free slot and this job has waited long enough.
    PeerIdle,
    /// The worker is shutting down: nothing more starts here.
    Draining,
}

/// The jobs on deck, shared by the delivery loop and the jobs' tasks.
#[derive(Clone)]
pub struct Deck {
    waiting: Arc<Mutex<HashMap<JobId, Waiting>>>,
    pool: SlotPool,
}

struct Waiting {
    since: Instant,
    release: Option<oneshot::Sender<Why>>,
}

/// A job's place on deck; it leaves the deck when dropped.
pub struct Ticket {
    job: JobId,
    deck: Deck,
    release: oneshot::Receiver<Why>,
    /// Asked to release once already: from then on it only waits for a
    /// slot (a release that could not be published keeps the job here).
    asked: bool,
}

impl Deck {
    pub fn new(pool: SlotPool) -> Self {
        Self {
            waiting: Arc::default(),
            pool,
        }
    }

    pub fn len(&self) -> usize {
        self.waiting().len()
    }

    pub fn board(&self, job: JobId) -> Ticket {
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(
            job,
            Waiting {
                since: Instant::now(),
                release: Some(tx),
            },
        );
        Ticket {
            job,
            deck: self.clone(),
            release: rx,
            asked: false,
        }
    }

    /// Asks the job that has waited longest, if it waited at least
    /// `min_wait` and was not asked already, to release its claim.
    pub fn release_oldest(&self, min_wait: Duration) -> bool {
        let mut waiting = self.waiting();
        let oldest = waiting
            .values_mut()
            .filter(|w| w.release.is_some() && w.since.elapsed() >= min_wait)
            .min_by_key(|w| w.since);
        match oldest.and_then(|w| w.release.take()) {
            Some(tx) => tx.send(Why::PeerIdle).is_ok(),
            None => false,
        }
    }

    pub fn release_all(&self) {
        for w in self.waiting().values_mut() {
            if let Some(tx) = w.release.take() {
                let _ = tx.send(Why::Draining);
            }
        }
    }

    fn waiting(&self) -> MutexGuard<'_, HashMap<JobId, Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Ticket {
    /// Waits for a slot, unless asked to release first (`Err`). A slot
    /// free at the same moment wins: the job is ready, it runs here.
    pub async fn seat(&mut self) -> Result<Slot, Why> {
        if self.asked {
            return Ok(self.deck.pool.take().await);
        }
        tokio::select! {
            biased;
            slot = self.deck.pool.take() => Ok(slot),
            why = &mut self.release => {
                self.asked = true;
                Err(why.unwrap_or(Why::Draining))
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.deck.waiting().remove(&self.job);
        // The loop may put another job on deck now.
        self.deck.pool.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_on_deck_takes_the_next_free_slot() {
        let pool = SlotPool::new(1);
        let deck = Deck::new(pool.clone());
        let running = pool.try_take().unwrap();
        let mut ticket = deck.board(JobId::new());
        assert_eq!(deck.len(), 1);
        let seated = tokio::spawn(async move { ticket.seat().await.ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!seated.is_finished(), "seated while the slot was busy");
        drop(running);
        let slot = tokio::time::timeout(Duration::from_secs(1), seated)
            .await
            .expect("not seated when the slot freed")
            .expect("the task ended")
            .expect("asked to release");
        assert_eq!(deck.len(), 0, "a seated job leaves the deck");
        assert!(
            pool.try_take().is_none(),
            "the freed slot went to the job on deck"
        );
        drop(slot);
        assert!(pool.try_take().is_some());
    }

    // Paused time: the waits are exact, however loaded the machine.
    #[tokio::test(start_paused = true)]
    async fn the_oldest_job_is_released_once_and_only_after_its_wait() {
        let pool = SlotPool::new(2);
        let deck = Deck::new(pool.clone());
        let _busy = (pool.try_take().unwrap(), pool.try_take().unwrap());
        let mut first = deck.board(JobId::new());
        tokio::time::sleep(Duration::from_millis(30)).await;
        let mut second = deck.board(JobId::new());
        assert!(
            !deck.release_oldest(Duration::from_secs(5)),
            "released before its wait"
        );
        assert!(deck.release_oldest(Duration::from_millis(20)));
        assert_eq!(first.seat().await.err(), Some(Why::PeerIdle));
        assert!(
            !deck.release_oldest(Duration::from_millis(20)),
            "the second has not waited 20 ms, the first was asked already"
        );
        deck.release_all();
        assert_eq!(second.seat().await.err(), Some(Why::Draining));
    }
}
