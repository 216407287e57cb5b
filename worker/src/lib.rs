//! The Lanzadera worker: takes jobs from the jobs topic, runs them, stores
//! their results and reports their status. See `docs/worker.md`.
//!
//! `app` is the process and its delivery loop, `delivery` and `consumer`
//! the Kafka side, `lifecycle` one job's events, `runner` one job's run
//! (with `package`, `git`, `process` and `upload` for its steps), and
//! `outcome` what became of it.

mod app;
pub mod cancels;
pub mod consumer;
mod delivery;
pub mod git;
mod lifecycle;
pub mod outcome;
pub mod package;
pub mod process;
mod runner;
pub mod settings;
pub mod upload;

pub use crate::app::Application;
pub use crate::settings::WorkerSettings;
