//! Which observer actuates (`docs/observers.md`): any number run, the one
//! holding a lease document in MongoDB leads. `Term` is the pure rule of
//! when this process may act; `LeaderLease` is the one conditional update
//! that takes or renews the lease; `campaign` runs it every renewal.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::{Collection, Database};
use serde::Serialize;
use tokio::sync::watch;

use crate::observer::now_ms;

/// The collection holding one lease document per role.
pub const LEADERS: &str = "leaders";
const ROLE: &str = "observer";

/// Served by `/metrics/desired`: where a reader learns which replica acts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub observer: String,
    pub leader: bool,
}

/// What one attempt to take or renew the lease answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The lease is ours until the time written with it.
    Won,
    /// Another observer holds a lease that has not run out.
    Lost,
    /// The database did not answer in time or failed: nothing is known.
    Unknown,
}

/// When this process may act, by its own monotonic clock: from a won
/// claim until the lease it wrote runs out, less a margin for the other
/// observers' clocks running ahead of ours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Term {
    until: Option<Instant>,
}

impl Term {
    /// `started` is when the claim was sent: the lease it wrote counts
    /// from no earlier than that.
    pub fn after(self, claim: Claim, started: Instant, lease: Duration, margin: Duration) -> Self {
        match claim {
            Claim::Won => Self {
                until: started.checked_add(lease.saturating_sub(margin)),
            },
            Claim::Lost => Self { until: None },
            // Still ours until it would have run out: the others can take
            // it only after that, by the time written in the database.
            Claim::Unknown => self,
        }
    }

    pub fn leading(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }
}

/// The lease document `{_id: "observer", holder, until}`.
#[derive(Clone)]
pub struct LeaderLease {
    leaders: Collection<Document>,
    holder: String,
    lease: Duration,
}

impl LeaderLease {
    pub fn new(db: &Database, holder: &str, lease: Duration) -> Self {
        Self {
            leaders: db.collection(LEADERS),
            holder: holder.to_string(),
            lease,
        }
    }

    /// One conditional upsert: ours if we hold it or it has run out by
    /// `now_ms`. When another holds it the filter matches nothing and the
    /// upsert collides with the existing `_id`: that answer is `Lost`.
    pub async fn claim(&self, now_ms: i64) -> mongodb::error::Result<Claim> {
        let lease_ms = i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX);
        let outcome = self
            .leaders
            .update_one(
                doc! {
                    "_id": ROLE,
                    "$or": [{"holder": &self.holder}, {"until": {"$lt": now_ms}}],
                },
                doc! {"$set": {"holder": &self.holder, "until": now_ms.saturating_add(lease_ms)}},
            )
            .upsert(true)
            .await;
        match outcome {
            Ok(_) => Ok(Claim::Won),
            Err(e) if is_duplicate_key(&e) => Ok(Claim::Lost),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up (at a clean stop), so that another observer
    /// takes it at its next renewal instead of after the whole lease.
    pub async fn release(&self) -> mongodb::error::Result<()> {
        self.leaders
            .update_one(
                doc! {"_id": ROLE, "holder": &self.holder},
                doc! {"$set": {"until": 0_i64}},
            )
            .await
            .map(|_| ())
    }
}

fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// This process's standing, shared by whatever may act only while leading.
#[derive(Clone)]
pub struct Leadership {
    id: Arc<str>,
    term: Arc<Mutex<Term>>,
    changes: watch::Receiver<bool>,
}

impl Leadership {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Exact at the moment of asking, even while a renewal hangs.
    pub fn leading(&self) -> bool {
        self.term
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .leading(Instant::now())
    }

    /// Fires when this process starts or stops leading (checked at every
    /// renewal; `leading()` is the exact answer in between).
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.changes.clone()
    }

    pub fn standing(&self) -> Standing {
        Standing {
            observer: self.id.to_string(),
            leader: self.leading(),
        }
    }
}

/// Tries to lead every `lease / 3` until `stop`, then gives the lease up.
pub fn campaign(
    lease: LeaderLease,
    mut stop: watch::Receiver<bool>,
) -> (Leadership, tokio::task::JoinHandle<()>) {
    let term = Arc::new(Mutex::new(Term::default()));
    let (tell, changes) = watch::channel(false);
    let leadership = Leadership {
        id: lease.holder.clone().into(),
        term: Arc::clone(&term),
        changes,
    };
    let renew = lease.lease / 3;
    // Another observer's clock may run ahead of ours by this much before
    // two could act at once.
    let margin = lease.lease / 6;
    let task = tokio::spawn(async move {
        loop {
            let started = Instant::now();
            let claim = match tokio::time::timeout(renew, lease.claim(now_ms())).await {
                Ok(Ok(claim)) => claim,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot reach the leader lease");
                    Claim::Unknown
                }
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = renew.as_millis() as u64,
                        "the leader lease did not answer in time"
                    );
                    Claim::Unknown
                }
            };
            let leading = {
                let mut term = term.lock().unwrap_or_else(|e| e.into_inner());
                *term = term.after(claim, started, lease.lease, margin);
                term.leading(Instant::now())
            };
            tell.send_if_modified(|was| {
                if *was == leading {
                    return false;
                }
                if leading {
                    tracing::info!(observer = %lease.holder, "leading: this observer actuates");
                } else {
                    tracing::info!(observer = %lease.holder, "following: another observer actuates");
                }
                *was = leading;
                true
            });
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(renew.saturating_sub(started.elapsed())) => {}
            }
        }
        *term.lock().unwrap_or_else(|e| e.into_inner()) = Term::default();
        tell.send_replace(false);
        if let Err(e) = lease.release().await {
            tracing::warn!(error = %e, "cannot give up the leader lease; another observer waits for it to run out");
        }
    });
    (leadership, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_millis(6000);
    const MARGIN: Duration = Duration::from_millis(1000);

    #[test]
    fn a_term_follows_the_claims() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let won_at = |n| Term::default().after(Claim::Won, ms(n), LEASE, MARGIN);
        // (term before, claim, sent at, asked at, leading?)
        let cases: &[(&str, Term, Claim, u64, u64, bool)] = &[
            ("nothing yet", Term::default(), Claim::Unknown, 0, 0, false),
            (
                "won: leads at once",
                Term::default(),
                Claim::Won,
                0,
                0,
                true,
            ),
            (
                "won: until lease less margin",
                Term::default(),
                Claim::Won,
                0,
                4999,
                true,
            ),
            (
                "won: not at lease less margin",
                Term::default(),
                Claim::Won,
                0,
                5000,
                false,
            ),
            (
                "counted from the sending",
                Term::default(),
                Claim::Won,
                100,
                5099,
                true,
            ),
            (
                "lost: stops at once",
                won_at(0),
                Claim::Lost,
                2000,
                2000,
                false,
            ),
            (
                "unknown keeps the term",
                won_at(0),
                Claim::Unknown,
                2000,
                4999,
                true,
            ),
            (
                "unknown does not extend it",
                won_at(0),
                Claim::Unknown,
                2000,
                5000,
                false,
            ),
            ("renewed: extended", won_at(0), Claim::Won, 2000, 6999, true),
            (
                "renewed: then ends",
                won_at(0),
                Claim::Won,
                2000,
                7000,
                false,
            ),
        ];
        for (name, before, claim, sent, asked, leading) in cases {
            let after = before.after(*claim, ms(*sent), LEASE, MARGIN);
            assert_eq!(after.leading(ms(*asked)), *leading, "{name}");
        }
    }

    #[test]
    fn a_margin_as_long_as_the_lease_never_leads() {
        let t0 = Instant::now();
        let term = Term::default().after(Claim::Won, t0, MARGIN, LEASE);
        assert!(!term.leading(t0));
    }
}
