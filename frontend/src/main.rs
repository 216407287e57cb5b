use frontend::{settings::Settings, startup::Application};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    common::telemetry::init("frontend");
    let settings = Settings::from_env()?;
    let app = Application::build(settings).await?;
    app.run_until_stopped().await
}
