use common::settings::Env;
use lanzadera_worker::{Application, WorkerSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A non-dumpable process's /proc/<pid>/environ and memory are closed to
    // other processes of the same user, so a job running as the worker's
    // user cannot read the worker's credentials from there.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("warning: could not mark the worker non-dumpable: {e}");
    }
    common::telemetry::init("lanzadera-worker");
    let settings = WorkerSettings::from_env(&Env::from_process())?;
    let app = Application::build(settings).await?;
    app.run_until_stopped(common::telemetry::shutdown_signal())
        .await
}
