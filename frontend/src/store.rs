//! Job records and observations in MongoDB. Every query on jobs is scoped
//! by owner: another tenant's job is indistinguishable from a missing one.

use common::mongo::{JOBS, OBSERVATIONS};
use common::{timestamp, JobId, JobRecord, JobState, Observation, StatusEvent};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::{Collection, Database};
use std::future::Future;
use std::time::Duration;

#[derive(Clone)]
pub struct JobStore {
    db: Database,
    /// Bound on every call (`LZ_MONGO_TIMEOUT_MS`): a hung server accepts
    /// connections and never answers, and the driver's own timeouts cover
    /// only finding a server and connecting to it.
    limit: Duration,
    jobs: Collection<JobRecord>,
    observations: Collection<Observation>,
}

/// What applying a status event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Changed,
    /// A replayed, late or backwards event: the record already says more.
    Ignored,
}

pub struct Page {
    pub records: Vec<JobRecord>,
    pub total: u64,
}

/// A call that got no answer within the bound.
#[derive(Debug, Clone, Copy)]
pub struct TimedOut(pub Duration);

fn id_filter(id: JobId) -> Document {
    doc! {"_id": id.to_string()}
}

fn states(states: &[JobState]) -> Vec<Bson> {
    states.iter().map(|s| Bson::from(s.as_str())).collect()
}

impl JobStore {
    async fn bounded<T>(
        &self,
        call: impl Future<Output = mongodb::error::Result<T>>,
    ) -> mongodb::error::Result<T> {
        match tokio::time::timeout(self.limit, call).await {
            Ok(result) => result,
            Err(_) => Err(mongodb::error::Error::custom(TimedOut(self.limit))),
        }
    }

    pub fn new(db: Database, limit: Duration) -> Self {
        Self {
            limit,
            jobs: db.collection(JOBS),
            observations: db.collection(OBSERVATIONS),
            db,
        }
    }

    pub async fn ping(&self) -> mongodb::error::Result<()> {
        self.bounded(async { self.db.run_command(doc! {"ping": 1}).await.map(|_| ()) })
            .await
    }

    pub async fn insert(&self, record: &JobRecord) -> mongodb::error::Result<()> {
        self.bounded(async { self.jobs.insert_one(record).await.map(|_| ()) })
            .await
    }

    pub async fn delete(&self, id: JobId) -> mongodb::error::Result<()> {
        self.bounded(async { self.jobs.delete_one(id_filter(id)).await.map(|_| ()) })
            .await
    }

    pub async fn get(&self, owner: &str, id: JobId) -> mongodb::error::Result<Option<JobRecord>> {
        self.bounded(async {
            let mut filter = id_filter(id);
            filter.insert("owner", owner);
            self.jobs.find_one(filter).await
        })
        .await
    }

    /// The owner's jobs, newest first.
    pub async fn list(
        &self,
        owner: &str,
        status: Option<JobState>,
        skip: u64,
        limit: i64,
    ) -> mongodb::error::Result<Page> {
        self.bounded(async {
            let mut filter = doc! {"owner": owner};
            if let Some(status) = status {
                filter.insert("status", status.as_str());
            }
            let total = self.jobs.count_documents(filter.clone()).await?;
            let records = self
                .jobs
                .find(filter)
                .sort(doc! {"submittedAt": -1, "_id": -1})
                .skip(skip)
                .limit(limit)
                .await?
                .try_collect()
                .await?;
            Ok(Page { records, total })
        })
        .await
    }

    /// Marks a queued job cancelled; false when it is no longer queued.
    pub async fn cancel_queued(&self, owner: &str, id: JobId) -> mongodb::error::Result<bool> {
        self.bounded(async {
            let mut filter = id_filter(id);
            filter.insert("owner", owner);
            filter.insert("status", JobState::Queued.as_str());
            let update = doc! {"$set": {
                "status": JobState::Cancelled.as_str(),
                "finishedAt": timestamp::format(&timestamp::now()),
                "error": "cancelled by its owner before it started",
            }};
            Ok(self.jobs.update_one(filter, update).await?.modified_count == 1)
        })
        .await
    }

    /// Applies a status event with one conditional update: the filter
    /// admits only the states the transition rule allows, so the update is
    /// atomic, a replay changes nothing and terminal states stay final.
    pub async fn apply(&self, event: &StatusEvent) -> mongodb::error::Result<Applied> {
        self.bounded(async {
            let from = JobState::predecessors(event.status);
            if from.is_empty() {
                return Ok(Applied::Ignored);
            }
            let mut filter = id_filter(event.job_id);
            filter.insert("status", doc! {"$in": states(&from)});
            let at = timestamp::format(&event.at);
            let mut set = doc! {"status": event.status.as_str()};
            if event.status == JobState::Running {
                // A re-delivered job starts again; an older attempt's late
                // `running` must not overwrite a newer one.
                filter.insert("attempt", doc! {"$lte": i64::from(event.attempt)});
                set.insert("startedAt", at);
                set.insert("attempt", i64::from(event.attempt));
                set.insert("exitCode", Bson::Null);
                set.insert("error", Bson::Null);
                if let Some(commit) = &event.commit {
                    set.insert("commit", commit.clone());
                }
            } else {
                set.insert("finishedAt", at);
                if let Some(code) = event.exit_code {
                    set.insert("exitCode", code);
                }
                if let Some(elapsed) = event.elapsed_seconds {
                    set.insert("elapsedSeconds", elapsed);
                }
                if let Some(files) = &event.output_files {
                    set.insert("outputFiles", files.clone());
                }
                if let Some(error) = &event.error {
                    set.insert("error", error.clone());
                }
                if event.attempt > 0 {
                    // The end of an attempt the observer has since queued
                    // again (its worker stopped renewing the lease) is stale.
                    filter.insert("attempt", doc! {"$lte": i64::from(event.attempt)});
                    set.insert("attempt", i64::from(event.attempt));
                }
            }
            if let Some(worker) = &event.worker_id {
                set.insert("workerId", worker.clone());
            }
            let result = self.jobs.update_one(filter, doc! {"$set": set}).await?;
            Ok(if result.modified_count == 1 {
                Applied::Changed
            } else {
                Applied::Ignored
            })
        })
        .await
    }

    /// The newest observations, newest first.
    pub async fn latest_observations(&self, n: i64) -> mongodb::error::Result<Vec<Observation>> {
        self.bounded(async {
            self.observations
                .find(doc! {})
                .sort(doc! {"timestamp": -1})
                .limit(n)
                .await?
                .try_collect()
                .await
        })
        .await
    }
}
