//! MongoDB client from settings.

use mongodb::options::ClientOptions;
use mongodb::{Client, Database};

use crate::settings::MongoSettings;

pub const JOBS: &str = "jobs";
pub const OBSERVATIONS: &str = "observations";

pub async fn connect(m: &MongoSettings) -> mongodb::error::Result<Database> {
    let mut options = ClientOptions::parse(m.uri.expose()).await?;
    options.server_selection_timeout = Some(m.server_selection_timeout);
    options.connect_timeout = Some(m.server_selection_timeout);
    options.app_name = Some("lanzadera".into());
    Ok(Client::with_options(options)?.database(&m.database))
}
