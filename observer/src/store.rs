//! Observations in MongoDB, where every frontend replica reads the newest
//! ones for `GET /health/load`. The collection holds exactly
//! `common::Observation`, one document per window.

use common::mongo::OBSERVATIONS;
use common::Observation;
use mongodb::bson::doc;
use mongodb::{Collection, Database};

#[derive(Clone)]
pub struct ObservationStore {
    observations: Collection<Observation>,
}

impl ObservationStore {
    pub fn new(db: &Database) -> Self {
        Self {
            observations: db.collection(OBSERVATIONS),
        }
    }

    /// Stores the observation of one window, replacing an earlier version
    /// of the same window (a revision after late events).
    pub async fn save(&self, observation: &Observation) -> mongodb::error::Result<()> {
        self.observations
            .replace_one(doc! {"timestamp": observation.timestamp}, observation)
            .upsert(true)
            .await
            .map(|_| ())
    }

    /// Deletes all but the newest `keep` observations.
    pub async fn trim(&self, keep: u64) -> mongodb::error::Result<u64> {
        let oldest_kept = self
            .observations
            .find_one(doc! {})
            .sort(doc! {"timestamp": -1})
            .skip(keep.saturating_sub(1))
            .await?;
        let Some(oldest_kept) = oldest_kept else {
            return Ok(0);
        };
        let deleted = self
            .observations
            .delete_many(doc! {"timestamp": {"$lt": oldest_kept.timestamp}})
            .await?;
        Ok(deleted.deleted_count)
    }

    pub async fn newest(&self, n: i64) -> mongodb::error::Result<Vec<Observation>> {
        use futures::TryStreamExt;
        self.observations
            .find(doc! {})
            .sort(doc! {"timestamp": -1})
            .limit(n)
            .await?
            .try_collect()
            .await
    }
}
