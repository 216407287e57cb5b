use common::settings::Env;
use observer::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("observer");
    let settings = Settings::from_env(&Env::from_process())?;
    let app = Application::build(settings).await?;
    app.run_until(common::telemetry::shutdown_signal()).await?;
    Ok(())
}
