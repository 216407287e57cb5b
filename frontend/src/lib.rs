//! The Lanzadera REST API: OIDC-protected job submission, status, results,
//! and the recorder that turns status events into job records.

pub mod auth;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod openapi;
pub mod placement;
pub mod recorder;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod store;
