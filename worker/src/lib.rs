//! The Lanzadera worker: takes jobs from the jobs topic, runs them, stores
//! their results and reports their status. See `docs/worker.md`.
//!
//! `app` is the process and its delivery loop over the slots, `delivery`,
//! `consumer` and `ledger` the group side of the jobs topic, `steal` the
//! rest of it, `board` the ignore topic (cancels and claims), `beat` the
//! heartbeat, `slot` the slots, `lifecycle` one job's events, `runner` one job's run (with
//! `package`, `git`, `process` and `upload` for its steps), and `outcome`
//! what became of it.

mod app;
mod beat;
pub mod board;
pub mod consumer;
mod deck;
mod delivery;
pub mod git;
pub mod ledger;
mod lifecycle;
pub mod outcome;
pub mod package;
pub mod process;
mod runner;
pub mod settings;
mod slot;
mod source;
mod steal;
pub mod upload;

pub use crate::app::Application;
pub use crate::settings::WorkerSettings;
