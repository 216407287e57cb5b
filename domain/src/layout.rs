//! The bucket layout, and the one path type that may name a file in it.
//!
//! ```text
//! jobs/<job id>/output/<relative path>   files the job wrote under output/
//! jobs/<job id>/logs/stdout.log          the run's standard output
//! jobs/<job id>/logs/stderr.log          the run's standard error
//! ```

use crate::JobId;

pub fn output_key(job: JobId, path: &OutputPath) -> String {
    format!("jobs/{job}/output/{}", path.as_str())
}

pub fn log_key(job: JobId, stream: LogStream) -> String {
    format!("jobs/{job}/logs/{}", stream.file_name())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Stdout => "stdout.log",
            Self::Stderr => "stderr.log",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "stdout" | "stdout.log" => Some(Self::Stdout),
            "stderr" | "stderr.log" => Some(Self::Stderr),
            _ => None,
        }
    }
}

/// A relative path inside a job's `output/` folder: no `..`, no absolute
/// path, no empty or `.` component, no backslash or control character. The
/// worker builds these from the files it uploads; the API parses requested
/// names with it, so a traversal attempt never reaches storage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutputPath(String);

impl OutputPath {
    pub const MAX_LEN: usize = 1024;

    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && !raw.chars().any(|c| c == '\\' || c.is_control())
            && raw
                .split('/')
                .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
        ok.then(|| Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component, for `Content-Disposition`.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths() {
        for good in [
            "a.csv",
            "sub/dir/x.txt",
            "..hidden",
            "a..b",
            "spaced name.txt",
        ] {
            assert!(OutputPath::parse(good).is_some(), "{good}");
        }
        for bad in [
            "",
            "..",
            "../x",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a/.",
            "a\\b",
            "a\u{0}b",
            "line\nbreak",
            "trailing/",
        ] {
            assert!(OutputPath::parse(bad).is_none(), "{bad:?}");
        }
        assert!(OutputPath::parse(&"a".repeat(1025)).is_none());
    }

    #[test]
    fn layout() {
        let id = JobId::parse("6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f").unwrap();
        let p = OutputPath::parse("tables/r.csv").unwrap();
        assert_eq!(
            output_key(id, &p),
            "jobs/6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f/output/tables/r.csv"
        );
        assert_eq!(p.file_name(), "r.csv");
        assert_eq!(
            log_key(id, LogStream::Stderr),
            "jobs/6f1c8a5e-2b7d-4c1e-9f3a-0a1b2c3d4e5f/logs/stderr.log"
        );
        assert_eq!(LogStream::parse("stdout"), Some(LogStream::Stdout));
        assert_eq!(LogStream::parse("x"), None);
    }
}
