//! What each command does; `main.rs` only parses.

use std::io::{BufRead, Write};
use std::path::{Component, Path};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::api::{job_path, Platform};
use crate::login::{self, Method};
use crate::{Cli, Command};

const ENDED: [&str; 3] = ["succeeded", "failed", "cancelled"];

pub async fn run(cli: Cli) -> Result<ExitCode> {
    let platform = Platform::new(&cli.api)?;
    let json = cli.json;
    match cli.command {
        Command::Login {
            password_stdin,
            user,
        } => {
            let method = match (password_stdin, user) {
                (true, Some(user)) => {
                    let mut password = String::new();
                    std::io::stdin().lock().read_line(&mut password)?;
                    let password = password.trim_end_matches(['\r', '\n']).to_string();
                    if password.is_empty() {
                        bail!("no password on standard input");
                    }
                    Method::Password { user, password }
                }
                _ => Method::Device,
            };
            let session = login::login(&platform, method).await?;
            login::save(&platform.base, &session)?;
            eprintln!("Signed in to {}.", platform.base);
        }
        Command::Logout => {
            if login::forget(&platform.base)? {
                eprintln!("Signed out of {}.", platform.base);
            } else {
                eprintln!("You were not signed in to {}.", platform.base);
            }
        }
        Command::Submit {
            repo,
            git_ref,
            arg,
            args,
            config,
            timeout,
            secret,
            wait,
        } => {
            let platform = platform.signed_in().await?;
            let mut body = json!({});
            let (url, pinned) = if repo == "." { here()? } else { (repo, None) };
            body["url"] = json!(url);
            if let Some(r) = git_ref.or(pinned) {
                body["ref"] = json!(r);
            }
            if let Some(args) = args {
                body["args"] = json!(args);
            } else if !arg.is_empty() {
                body["args"] = json!(arg);
            }
            if let Some(config) = config {
                body["config"] = config_value(&config)?;
            }
            if let Some(secs) = timeout {
                body["timeoutSeconds"] = json!(secs);
            }
            if !secret.is_empty() {
                body["secrets"] = secrets_value(&secret)?;
            }
            let accepted = platform.post("/api/jobs", &body).await?;
            let id = accepted["jobId"]
                .as_str()
                .context("the platform gave no job id")?
                .to_string();
            if !wait {
                print(json, &accepted, || println!("{id}"));
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("Submitted {id}; waiting for it to end…");
            let job = wait_for(&platform, &id).await?;
            print(json, &job, || show_job(&job));
            return Ok(ended_code(&job));
        }
        Command::Status { id } => {
            let job = platform.signed_in().await?.get(&job_path(&id)?).await?;
            print(json, &job, || show_job(&job));
        }
        Command::List {
            status,
            page,
            per_page,
        } => {
            let platform = platform.signed_in().await?;
            let mut path = format!("/api/jobs?page={page}&per_page={per_page}");
            if let Some(status) = status {
                path.push_str(&format!(
                    "&status={}",
                    url::form_urlencoded::byte_serialize(status.as_bytes()).collect::<String>()
                ));
            }
            let listed = platform.get(&path).await?;
            print(json, &listed, || {
                println!("{:<36}  {:<9}  {:<24}  URL", "ID", "STATUS", "SUBMITTED");
                for job in listed["jobs"].as_array().into_iter().flatten() {
                    println!(
                        "{:<36}  {:<9}  {:<24}  {}",
                        text(&job["id"]),
                        text(&job["status"]),
                        text(&job["submittedAt"]),
                        text(&job["url"])
                    );
                }
                eprintln!(
                    "page {} · {} jobs in all",
                    text(&listed["page"]),
                    text(&listed["total"])
                );
            });
        }
        Command::Logs { id, stderr } => {
            let platform = platform.signed_in().await?;
            let stream = if stderr { "stderr" } else { "stdout" };
            let response = platform
                .download(&format!("{}/logs?stream={stream}", job_path(&id)?))
                .await?;
            std::io::stdout().write_all(&response.bytes().await?)?;
        }
        Command::Download { id, files, output } => {
            let platform = platform.signed_in().await?;
            let job = platform.get(&job_path(&id)?).await?;
            let known: Vec<String> = job["files"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect();
            let wanted = if files.is_empty() {
                known.clone()
            } else {
                files
            };
            for file in &wanted {
                if !known.contains(file) {
                    bail!(
                        "job {id} has no file `{file}` (it has: {})",
                        known.join(", ")
                    );
                }
                download(&platform, &id, file, &output).await?;
            }
            eprintln!("{} file(s) in {}", wanted.len(), output.display());
        }
        Command::Cancel { id } => {
            let answer = platform.signed_in().await?.delete(&job_path(&id)?).await?;
            print(json, &answer, || {
                println!("{}", text(&answer["status"]));
                if let Some(message) = answer["message"].as_str() {
                    eprintln!("{message}");
                }
            });
        }
        Command::Load => {
            let load = platform.signed_in().await?.get("/health/load").await?;
            print(json, &load, || show_load(&load));
        }
        Command::Completions { .. } => unreachable!("handled before the runtime"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print(json: bool, value: &Value, human: impl FnOnce()) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        human();
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `.`: this repository's `origin` and its `HEAD` commit, with a warning
/// when no remote branch has that commit (the worker could not fetch it).
fn here() -> Result<(String, Option<String>)> {
    let repo = git2::Repository::discover(".").context("`.` is not inside a git repository")?;
    let origin = repo
        .find_remote("origin")
        .context("this repository has no `origin` remote")?;
    let url = origin.url().context("`origin` has no URL")?.to_string();
    let head = repo
        .head()
        .context("this repository has no commit yet")?
        .peel_to_commit()?
        .id();
    let mut pushed = false;
    for branch in repo.branches(Some(git2::BranchType::Remote))? {
        let (branch, _) = branch?;
        if let Some(tip) = branch.get().target() {
            if tip == head || repo.graph_descendant_of(tip, head)? {
                pushed = true;
                break;
            }
        }
    }
    if !pushed {
        eprintln!("warning: HEAD ({head}) is on no remote branch: push it, or the platform cannot fetch it");
    }
    Ok((url, Some(head.to_string())))
}

/// A file's text, else JSON given on the command line.
fn config_value(config: &str) -> Result<Value> {
    let path = Path::new(config);
    if path.is_file() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("could not read {config}"))?;
        return Ok(Value::String(text));
    }
    serde_json::from_str(config)
        .with_context(|| format!("--config `{config}` is neither a file nor JSON"))
}

/// `--secret NAME=VALUE`, or `--secret NAME` for the value of the
/// environment variable NAME.
fn secrets_value(given: &[String]) -> Result<Value> {
    let mut secrets = serde_json::Map::new();
    for one in given {
        let (name, value) = match one.split_once('=') {
            Some((name, value)) => (name, value.to_string()),
            None => (
                one.as_str(),
                std::env::var(one).with_context(|| {
                    format!("--secret {one}: no environment variable {one} to take it from; give --secret {one}=VALUE or export {one}")
                })?,
            ),
        };
        secrets.insert(name.to_string(), Value::String(value));
    }
    Ok(Value::Object(secrets))
}

async fn wait_for(platform: &Platform, id: &str) -> Result<Value> {
    let path = job_path(id)?;
    let mut last = String::new();
    loop {
        let job = platform.get(&path).await?;
        let status = text(&job["status"]);
        if status != last {
            eprintln!("{status}");
            last = status.clone();
        }
        if ENDED.contains(&status.as_str()) {
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ended_code(job: &Value) -> ExitCode {
    match job["status"].as_str() {
        Some("succeeded") => ExitCode::SUCCESS,
        Some("cancelled") => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

fn show_job(job: &Value) {
    for (label, key) in [
        ("id", "id"),
        ("status", "status"),
        ("url", "url"),
        ("ref", "ref"),
        ("commit", "commit"),
        ("submitted", "submittedAt"),
        ("started", "startedAt"),
        ("finished", "finishedAt"),
        ("exit code", "exitCode"),
        ("error", "error"),
        ("worker", "workerId"),
        ("attempt", "attempt"),
    ] {
        if !job[key].is_null() {
            println!("{label:<10} {}", text(&job[key]));
        }
    }
    for file in job["files"].as_array().into_iter().flatten() {
        println!("{:<10} {}", "file", text(file));
    }
}

fn show_load(load: &Value) {
    let rows: Vec<&Value> = load.as_array().into_iter().flatten().collect();
    println!(
        "{:<8} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}  TREND",
        "AGE", "ARRIVED", "STARTED", "ENDED", "RESP (s)", "BACKLOG", "WORKERS"
    );
    let newest = rows
        .first()
        .and_then(|o| o["timestamp"].as_i64())
        .unwrap_or(0);
    for (i, o) in rows.iter().enumerate() {
        let backlog = o["backlog"].as_u64().unwrap_or(0);
        // Newest first: compare with the next (older) observation.
        let trend = match rows.get(i + 1).and_then(|older| older["backlog"].as_u64()) {
            Some(before) if backlog > before => "↑",
            Some(before) if backlog < before => "↓",
            Some(_) => "→",
            None => "",
        };
        let age = (newest - o["timestamp"].as_i64().unwrap_or(newest)) as f64 / 1000.0;
        println!(
            "{:<8} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>8} {:>8}  {trend}",
            format!("-{age:.0}s"),
            o["avgRateOfArrival"].as_f64().unwrap_or(0.0),
            o["avgRateOfService"].as_f64().unwrap_or(0.0),
            o["avgRateOfFinished"].as_f64().unwrap_or(0.0),
            o["avgResponseTime"].as_f64().unwrap_or(0.0),
            backlog,
            text(&o["workers"]),
        );
    }
}

/// One file to `output/<its path>`, with a progress bar on a terminal.
async fn download(platform: &Platform, id: &str, file: &str, output: &Path) -> Result<()> {
    let relative = Path::new(file);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        bail!("refusing the file name `{file}`");
    }
    let mut link = url::Url::parse(&format!("{}{}/files/", platform.base, job_path(id)?))?;
    link.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("bad platform URL"))?
        .pop_if_empty()
        .extend(file.split('/'));
    let mut response = platform.download(link.path()).await?;
    let bar = indicatif::ProgressBar::new(response.content_length().unwrap_or(0));
    bar.set_message(file.to_string());
    let target = output.join(relative);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::fs::File::create(&target)
        .with_context(|| format!("could not write {}", target.display()))?;
    while let Some(chunk) = response.chunk().await? {
        out.write_all(&chunk)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}
