//! MongoDB client from settings, and the indexes every query relies on.

use mongodb::bson::doc;
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, WriteConcern};
use mongodb::{Client, Database, IndexModel};

use crate::settings::MongoSettings;

pub const JOBS: &str = "jobs";
pub const OBSERVATIONS: &str = "observations";

pub async fn connect(m: &MongoSettings) -> mongodb::error::Result<Database> {
    let mut options = ClientOptions::parse(m.uri.expose()).await?;
    options.server_selection_timeout = Some(m.server_selection_timeout);
    options.connect_timeout = Some(m.server_selection_timeout);
    options.app_name = Some("lanzadera".into());
    // An accepted job must survive a database crash: writes are
    // acknowledged only once journaled on a majority.
    options.write_concern = Some(
        WriteConcern::builder()
            .w(Acknowledgment::Majority)
            .journal(true)
            .build(),
    );
    Ok(Client::with_options(options)?.database(&m.database))
}

fn index(name: &str, keys: mongodb::bson::Document) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_string()).build())
        .build()
}

/// Creates the indexes of both collections; creating an existing index is
/// a no-op, so every service may call it at start.
pub async fn ensure_indexes(db: &Database) -> mongodb::error::Result<()> {
    // A user's job list, newest first, optionally filtered by status.
    db.collection::<mongodb::bson::Document>(JOBS)
        .create_indexes([
            index("owner_submitted", doc! {"owner": 1, "submittedAt": -1}),
            index(
                "owner_status_submitted",
                doc! {"owner": 1, "status": 1, "submittedAt": -1},
            ),
        ])
        .await?;
    // `GET /health/load` reads the newest observations.
    db.collection::<mongodb::bson::Document>(OBSERVATIONS)
        .create_index(index("timestamp_desc", doc! {"timestamp": -1}))
        .await?;
    Ok(())
}
