//! Running the job's scripts: each in its own process group, with a cleared
//! environment, stdout and stderr streamed to size-limited files, a
//! wall-clock deadline, and a watch on the size of `output/`.

use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::fs::File;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use common::Masker;

use crate::settings::JobUser;

/// One npm lifecycle script: `prestart`, `start` (which gets the job's
/// args) or `poststart`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    pub script: String,
    pub args: Vec<String>,
}

impl Stage {
    /// What `npm run` does: `sh -c "<script> <args quoted>"`. Here the args
    /// travel as positional parameters and `"$@"` expands them, so each
    /// arg stays one word and none is ever parsed by the shell.
    fn command(&self) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(format!("{} \"$@\"", self.script))
            .arg("sh")
            .args(&self.args);
        cmd
    }
}

pub struct RunSpec<'a> {
    pub repo: &'a Path,
    pub stages: Vec<Stage>,
    /// The complete environment of the scripts.
    pub env: Vec<(String, String)>,
    pub stdout_log: &'a Path,
    pub stderr_log: &'a Path,
    pub max_log_bytes: u64,
    pub output_dir: &'a Path,
    pub max_output_bytes: u64,
    pub deadline: Instant,
    /// Run as this user instead of the worker's.
    pub user: Option<JobUser>,
    /// Values replaced by `***` in the logs: the job's secrets.
    pub masked: Vec<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd<S> {
    /// Every stage ran; the exit code of the last one that ran (the first
    /// non-zero one, or 0).
    Exited(i32),
    Signalled(i32),
    TimedOut,
    OutputTooLarge(u64),
    /// Stopped from outside (cancel or shutdown).
    Interrupted(S),
    CouldNotStart(String),
}

/// Runs the stages in order until one fails. `interrupt` resolves when the
/// run must stop; its value is handed back in `RunEnd::Interrupted`.
pub async fn run<S>(spec: &RunSpec<'_>, interrupt: impl Future<Output = S>) -> RunEnd<S> {
    let mut stdout = match LogFile::create(spec.stdout_log, spec).await {
        Ok(f) => f,
        Err(e) => return RunEnd::CouldNotStart(format!("cannot create the log file: {e}")),
    };
    let mut stderr = match LogFile::create(spec.stderr_log, spec).await {
        Ok(f) => f,
        Err(e) => return RunEnd::CouldNotStart(format!("cannot create the log file: {e}")),
    };
    tokio::pin!(interrupt);
    let mut end = RunEnd::Exited(0);
    for stage in &spec.stages {
        let (stage_end, out, err) = run_stage(spec, stage, stdout, stderr, &mut interrupt).await;
        stdout = out;
        stderr = err;
        end = stage_end;
        if !matches!(end, RunEnd::Exited(0)) {
            break;
        }
    }
    stdout.finish().await;
    stderr.finish().await;
    end
}

/// The stage's command: its own process group, the job's environment only,
/// and killed if the worker dies.
fn stage_command(spec: &RunSpec<'_>, stage: &Stage) -> Command {
    let mut cmd = stage.command();
    cmd.current_dir(spec.repo)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that a kill reaches every process it started.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(user) = spec.user {
        // std also drops root's supplementary groups when it sets the uid.
        cmd.uid(user.uid).gid(user.gid);
    }
    let worker = std::process::id();
    // SAFETY: the closure runs between fork and exec; `guard::split` makes
    // only async-signal-safe calls (see there).
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || guard::split(worker));
    }
    cmd
}

/// The job's whole process group dies with the worker (`docs/worker.md`,
/// *The job's process*). A parent-death signal reaches one process only, and a
/// script's own children would outlive a `kill -9` of the worker and run
/// on beside the attempt that replaces it. So the process the worker
/// starts is a guard: it forks the script, waits for it and hands its end
/// back (exit code or signal); when the worker dies, the guard's
/// parent-death signal makes it kill its group, the script and everything
/// the script started (a process that left the group with `setsid` is not
/// covered).
#[allow(unsafe_code)]
mod guard {
    use std::io;

    use nix::libc;

    /// Parent-death signal of the guard.
    const ORPHANED: libc::c_int = libc::SIGUSR1;

    extern "C" fn kill_group(_: libc::c_int) {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe {
            libc::kill(0, libc::SIGKILL);
        }
    }

    extern "C" fn ignore(_: libc::c_int) {}

    /// In the forked child, before exec: returns in the script's process
    /// (which goes on to exec); the guard never returns.
    ///
    /// # Safety
    /// Only async-signal-safe calls: prctl, sigaction, fork, getppid,
    /// close_range/close, waitpid, kill, signal, _exit.
    pub unsafe fn split(worker: u32) -> io::Result<()> {
        set_pdeathsig(ORPHANED)?;
        if libc::getppid() as u32 != worker {
            // The worker died before the signal was armed.
            libc::_exit(1);
        }
        handle(ORPHANED, kill_group);
        // A group-wide SIGTERM (cancel, shutdown) is for the script; the
        // guard goes on waiting for it. A handler, not SIG_IGN: handlers
        // are reset at exec, so the script still gets the default action.
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            handle(signal, ignore);
        }
        let script = libc::fork();
        if script < 0 {
            return Err(io::Error::last_os_error());
        }
        if script == 0 {
            // The script dies if its guard does (e.g. killed by the group
            // kill at a timeout), whatever it does with signals.
            set_pdeathsig(libc::SIGKILL)?;
            return Ok(());
        }
        // The guard keeps only stdout and stderr: the pipe through which
        // the worker learns whether exec succeeded must close when the
        // script's exec does.
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..4096 {
                libc::close(fd);
            }
        }
        let mut status = 0;
        loop {
            let done = libc::waitpid(script, &mut status, 0);
            if done == script {
                break;
            }
            if done < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(127);
            }
        }
        if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            libc::signal(signal, libc::SIG_DFL);
            libc::kill(libc::getpid(), signal);
            libc::_exit(128 + signal);
        }
        libc::_exit(libc::WEXITSTATUS(status));
    }

    unsafe fn set_pdeathsig(signal: libc::c_int) -> io::Result<()> {
        if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    unsafe fn handle(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
}

async fn run_stage<S, I: Future<Output = S>>(
    spec: &RunSpec<'_>,
    stage: &Stage,
    stdout: LogFile,
    stderr: LogFile,
    interrupt: &mut std::pin::Pin<&mut I>,
) -> (RunEnd<S>, LogFile, LogFile) {
    let mut child = match stage_command(spec, stage).spawn() {
        Ok(child) => child,
        Err(e) => {
            return (
                RunEnd::CouldNotStart(format!("could not start /bin/sh: {e}")),
                stdout,
                stderr,
            )
        }
    };
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let out_task = child
        .stdout
        .take()
        .map(|pipe| tokio::spawn(stdout.drain(pipe)));
    let err_task = child
        .stderr
        .take()
        .map(|pipe| tokio::spawn(stderr.drain(pipe)));
    let end = supervise(spec, &mut child, group, interrupt).await;
    // Whatever the shell left running in its group (background jobs,
    // daemons) goes with it, and so do the pipes they hold.
    if let Some(group) = group {
        let _ = killpg(group, Signal::SIGKILL);
    }
    let stdout = collect(out_task).await;
    let stderr = collect(err_task).await;
    match (stdout, stderr) {
        (Some(o), Some(e)) => (end, o, e),
        _ => {
            // A copier task panicked: nothing sensible left to log into.
            let reason = "the log copier failed".to_string();
            (
                RunEnd::CouldNotStart(reason),
                LogFile::disabled(),
                LogFile::disabled(),
            )
        }
    }
}

/// Waits for the script's end, killing its group at the deadline, on an
/// interrupt, or when `output/` outgrows its limit.
async fn supervise<S, I: Future<Output = S>>(
    spec: &RunSpec<'_>,
    child: &mut Child,
    group: Option<Pid>,
    interrupt: &mut std::pin::Pin<&mut I>,
) -> RunEnd<S> {
    let mut size_check = tokio::time::interval(Duration::from_secs(1));
    size_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            status = child.wait() => return match status {
                Ok(s) => match (s.code(), s.signal()) {
                    (Some(code), _) => RunEnd::Exited(code),
                    (None, Some(signal)) => RunEnd::Signalled(signal),
                    (None, None) => RunEnd::Exited(-1),
                },
                Err(e) => RunEnd::CouldNotStart(format!("waiting for the script failed: {e}")),
            },
            _ = tokio::time::sleep_until(spec.deadline) => {
                kill_group(group, child, Duration::ZERO).await;
                return RunEnd::TimedOut;
            }
            why = interrupt.as_mut() => {
                kill_group(group, child, Duration::from_secs(2)).await;
                return RunEnd::Interrupted(why);
            }
            _ = size_check.tick(), if spec.max_output_bytes > 0 => {
                let bytes = dir_size(spec.output_dir.to_path_buf()).await;
                if bytes > spec.max_output_bytes {
                    kill_group(group, child, Duration::ZERO).await;
                    return RunEnd::OutputTooLarge(bytes);
                }
            }
        }
    }
}

async fn collect(task: Option<tokio::task::JoinHandle<LogFile>>) -> Option<LogFile> {
    let mut task = task?;
    // A process that left the group (setsid) may keep the pipe open: stop
    // copying after a short while rather than wait for it forever.
    match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
        Ok(done) => done.ok(),
        Err(_) => {
            task.abort();
            None
        }
    }
}

/// SIGTERM to the group, then SIGKILL after `grace` if the leader still
/// runs.
async fn kill_group(group: Option<Pid>, child: &mut Child, grace: Duration) {
    let Some(group) = group else {
        let _ = child.start_kill();
        return;
    };
    if !grace.is_zero() {
        let _ = killpg(group, Signal::SIGTERM);
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            let _ = killpg(group, Signal::SIGKILL);
            return;
        }
    }
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait().await;
}

/// Total size of the regular files under `dir` (symlinks not followed).
pub async fn dir_size(dir: PathBuf) -> u64 {
    tokio::task::spawn_blocking(move || {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    })
    .await
    .unwrap_or(0)
}

/// A log file that keeps the first `limit` bytes of a stream, with the
/// job's secrets masked, and counts the rest.
struct LogFile {
    file: Option<File>,
    masker: Masker,
    written: u64,
    dropped: u64,
    limit: u64,
}

impl LogFile {
    async fn create(path: &Path, spec: &RunSpec<'_>) -> io::Result<Self> {
        Ok(Self {
            file: Some(File::create(path).await?),
            masker: Masker::new(spec.masked.iter().copied()),
            written: 0,
            dropped: 0,
            limit: spec.max_log_bytes,
        })
    }

    fn disabled() -> Self {
        Self {
            file: None,
            masker: Masker::new([]),
            written: 0,
            dropped: 0,
            limit: 0,
        }
    }

    /// Keeps what fits of `bytes` (already masked).
    async fn keep(&mut self, bytes: &[u8]) {
        let room = self.limit.saturating_sub(self.written) as usize;
        let keep = bytes.len().min(room);
        if keep > 0 {
            if let Some(file) = self.file.as_mut() {
                if file.write_all(&bytes[..keep]).await.is_err() {
                    self.file = None;
                }
            }
            self.written += keep as u64;
        }
        self.dropped += (bytes.len() - keep) as u64;
    }

    /// Copies the pipe until it closes. Keeps reading past the limit so the
    /// job never blocks on a full pipe.
    async fn drain(mut self, mut pipe: impl AsyncRead + Unpin) -> Self {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let shown = self.masker.feed(&buf[..n]);
            self.keep(&shown).await;
        }
        self
    }

    async fn finish(mut self) {
        let rest = self.masker.finish();
        self.keep(&rest).await;
        if let Some(mut file) = self.file.take() {
            if self.dropped > 0 {
                let note = format!(
                    "\n[lanzadera: log truncated at {} bytes; {} more bytes were dropped]\n",
                    self.limit, self.dropped
                );
                let _ = file.write_all(note.as_bytes()).await;
            }
            let _ = file.flush().await;
        }
    }
}
