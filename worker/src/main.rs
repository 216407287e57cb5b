use common::settings::Env;
use lanzadera_worker::{Application, WorkerSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("lanzadera-worker");
    let settings = WorkerSettings::from_env(&Env::from_process())?;
    let app = Application::build(settings).await?;
    app.run_until_stopped(common::telemetry::shutdown_signal())
        .await
}
