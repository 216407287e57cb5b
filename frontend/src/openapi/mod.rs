//! The API description, generated from the code: each route's handler
//! carries its `#[utoipa::path]`, the bodies derive `ToSchema`, and the
//! shared answers are built in `responses.rs`. Routes are registered through
//! `utoipa_actix_web`, so a route cannot be served without being described.
//! The same document is served at `/api/openapi.json` and written to
//! `docs/openapi.json` by `make docs` (a test fails when that copy is stale).

pub mod responses;
pub mod schemas;

use actix_web::App;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lanzadera",
        description = include_str!("intro.md"),
    ),
    servers((url = "http://127.0.0.1:8080", description = "Local development stack")),
    tags(
        (name = "auth", description = "Obtaining an access token."),
        (name = "jobs", description = "Submitting, listing, reading and cancelling jobs."),
        (name = "files", description = "Downloading output files and logs."),
        (name = "health", description = "Liveness, readiness and load."),
        (name = "operations", description = "Metrics and this document."),
        (name = "compatibility", description = "Routes of the original service, kept for its clients."),
    ),
    security(("bearer" = [])),
    components(
        schemas(
            schemas::Error, schemas::Readiness, schemas::NotReady, schemas::Credentials, schemas::SignInConfig,
            schemas::TokenResponse, schemas::JobSubmission, common::JobState, schemas::JobLinks,
            crate::routes::jobs::JobView, schemas::JobPage, schemas::JobAccepted,
            schemas::JobCreated, schemas::JobCancelled, schemas::CancelRequested,
            common::ScaleDecision, common::Observation,
        ),
        responses(
            responses::Unauthorized, responses::JobNotFound, responses::Unavailable,
            responses::BadQuery, responses::BadSubmission, responses::PayloadTooLarge,
            responses::Cancelled, responses::CancelRequested, responses::AlreadyFinished,
            responses::FileNotFound, responses::BadFileName, responses::Download,
            responses::JobView, responses::NotModified, responses::Token, responses::LoginRefused,
        ),
    ),
    modifiers(&Bearer),
)]
struct ApiDoc;

/// The `bearer` security scheme every protected route names.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut Document) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(include_str!("bearer.md").trim()))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The whole document: the components above and every route `configure`
/// registers.
pub fn document() -> Document {
    let (_, paths) = App::new()
        .into_utoipa_app()
        .configure(routes::configure)
        .split_for_parts();
    let mut doc = ApiDoc::openapi();
    doc.paths = paths.paths;
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The document as served and committed: pretty JSON with a final newline.
pub fn json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}
