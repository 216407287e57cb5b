//! `lanzadera-provision`: creates the topics, the bucket and the indexes
//! named by the same `LZ_*` variables the services read (see
//! `docs/configuration.md`), through the provisioner the services use. The
//! dev stack and the benchmark run it; it waits for the backing services up
//! to `--wait SECONDS` (default 30) and exits non-zero if something is
//! still missing then.

use std::process::ExitCode;
use std::time::Duration;

use common::provision::Provisioner;
use common::settings::{Env, KafkaSettings, MongoSettings, S3Settings};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    common::telemetry::init("lanzadera-provision");
    let mut args = std::env::args().skip(1);
    let mut wait = Duration::from_secs(30);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--wait", Some(secs)) => wait = Duration::from_secs(secs),
            _ => {
                eprintln!("usage: lanzadera-provision [--wait SECONDS]");
                return ExitCode::from(2);
            }
        }
    }
    let env = Env::from_process();
    let settings = (|| {
        Ok::<_, common::settings::SettingsError>((
            KafkaSettings::from_env(&env)?,
            S3Settings::from_env(&env)?,
            MongoSettings::from_env(&env)?,
        ))
    })();
    let (kafka, s3, mongo) = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lanzadera-provision: {e}");
            return ExitCode::from(2);
        }
    };
    let db = match common::mongo::connect(&mongo).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("lanzadera-provision: MongoDB settings: {e}");
            return ExitCode::from(2);
        }
    };
    let provisioner = Provisioner::new().topics(&kafka).bucket(&s3).indexes(&db);
    match provisioner.within(wait).await {
        Ok(()) => {
            tracing::info!(
                jobs = %kafka.jobs_topic, status = %kafka.status_topic, ignore = %kafka.cancel_topic,
                bucket = %s3.bucket, database = %mongo.database, "provisioned"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lanzadera-provision: {e}");
            ExitCode::FAILURE
        }
    }
}
