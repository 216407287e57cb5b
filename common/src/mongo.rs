//! MongoDB client from settings.

use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::{Client, Database};

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
