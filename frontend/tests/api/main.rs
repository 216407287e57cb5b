//! The frontend's API tests: the real application, the real local stack,
//! real OIDC tokens.

mod auth;
mod files;
mod health;
mod helpers;
mod jobs;
mod reads;
mod recorder;
mod resilience;
mod signin;
