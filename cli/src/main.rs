//! `lanzadera`: the developer's command for the platform (`docs/cli.md`).
//!
//! Exit codes: 0 done (a waited job succeeded), 1 a waited job failed,
//! 2 a waited job was cancelled, 3 a usage or platform error, 4 not signed in.

mod api;
mod commands;
mod login;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

pub const NOT_SIGNED_IN: &str =
    "you are not signed in, or your login has expired: run `lanzadera login`";

#[derive(Parser)]
#[command(
    name = "lanzadera",
    version,
    about = "Run git repositories as jobs on a Lanzadera platform"
)]
pub struct Cli {
    /// The platform's URL.
    #[arg(
        long,
        global = true,
        env = "LANZADERA_API",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api: String,
    /// Print the API's JSON instead of a summary (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Sign in: shows a link and a code to confirm in a browser (device code).
    Login {
        /// For scripts: read the password from standard input (needs --user).
        #[arg(long, requires = "user")]
        password_stdin: bool,
        /// The username for --password-stdin.
        #[arg(long)]
        user: Option<String>,
    },
    /// Forget the saved login for this platform.
    Logout,
    /// Submit a job: a repository URL, or `.` for the git repository here.
    Submit {
        /// A git URL, or `.`: this folder's `origin` at its `HEAD` commit.
        repo: String,
        /// A branch, tag or commit to run.
        #[arg(long = "ref")]
        git_ref: Option<String>,
        /// One argument for the start script (repeatable).
        #[arg(long = "arg", allow_hyphen_values = true)]
        arg: Vec<String>,
        /// Arguments as one string, split like a shell would.
        #[arg(long, conflicts_with = "arg", allow_hyphen_values = true)]
        args: Option<String>,
        /// The config: a file, or JSON text.
        #[arg(long)]
        config: Option<String>,
        /// The job's time limit in seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// A secret for the script's environment (repeatable): NAME takes
        /// the value of this shell's variable NAME, which keeps it out of
        /// the shell history; NAME=VALUE gives it here.
        #[arg(long = "secret", value_name = "NAME[=VALUE]")]
        secret: Vec<String>,
        /// Wait for the job to end; the exit code says how it ended.
        #[arg(long)]
        wait: bool,
    },
    /// One job.
    Status { id: String },
    /// Your jobs, newest first.
    List {
        /// Only jobs in this state.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 1)]
        page: u32,
        #[arg(long, default_value_t = 20)]
        per_page: u32,
    },
    /// A job's stored output (stdout, or --stderr).
    Logs {
        id: String,
        #[arg(long)]
        stderr: bool,
    },
    /// Download a job's files (all of them unless named), keeping their paths.
    Download {
        id: String,
        files: Vec<String>,
        /// Where to put them.
        #[arg(short = 'o', long, default_value = ".")]
        output: std::path::PathBuf,
    },
    /// Cancel a queued or running job.
    Cancel { id: String },
    /// The platform's load: the last observations, newest first.
    Load,
    /// Print a completion script for your shell.
    Completions { shell: clap_complete::Shell },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "lanzadera",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    match commands::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lanzadera: {e:#}");
            if e.to_string().contains(NOT_SIGNED_IN) {
                ExitCode::from(4)
            } else {
                ExitCode::from(3)
            }
        }
    }
}
