//! The job's `package.json`: which scripts `npm run start` would run.

use serde_json::Value;

use crate::process::Stage;

/// The scripts `npm run start` runs, read from `package.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub prestart: Option<String>,
    pub start: String,
    pub poststart: Option<String>,
}

impl Package {
    pub fn parse(text: &str) -> Result<Self, String> {
        let json: Value = serde_json::from_str(text)
            .map_err(|e| format!("package.json is not valid JSON: {e}"))?;
        let script = |name: &str| {
            json.get("scripts")
                .and_then(|s| s.get(name))
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        };
        let text_field = |name: &str| {
            json.get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let start = script("start").ok_or(
            "package.json has no `scripts.start`: add the command that runs the job, e.g. \
             {\"scripts\": {\"start\": \"node main.js\"}}",
        )?;
        Ok(Self {
            name: text_field("name"),
            version: text_field("version"),
            prestart: script("prestart"),
            start,
            poststart: script("poststart"),
        })
    }

    /// As `npm run start -- <args>`: `prestart`, `start` with the args, then
    /// `poststart`, stopping at the first failure.
    pub fn stages(&self, args: &[String]) -> Vec<Stage> {
        let stage = |name: &str, script: &str, args: Vec<String>| Stage {
            name: name.to_string(),
            script: script.to_string(),
            args,
        };
        let mut stages = Vec::new();
        if let Some(pre) = &self.prestart {
            stages.push(stage("prestart", pre, vec![]));
        }
        stages.push(stage("start", &self.start, args.to_vec()));
        if let Some(post) = &self.poststart {
            stages.push(stage("poststart", post, vec![]));
        }
        stages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_scripts() {
        let p = Package::parse(
            r#"{"name":"sim","version":"1.2.0","scripts":{"prestart":"make","start":"node a.js","poststart":"echo done"}}"#,
        )
        .unwrap();
        let stages = p.stages(&["a b".into()]);
        let names: Vec<_> = stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["prestart", "start", "poststart"]);
        assert_eq!(stages[1].args, vec!["a b"]);
        assert!(stages[0].args.is_empty());
        assert_eq!(p.name, "sim");
    }

    #[test]
    fn package_errors_say_what_to_fix() {
        let table = [
            ("{", "not valid JSON"),
            ("{}", "no `scripts.start`"),
            (r#"{"scripts":{"start":""}}"#, "no `scripts.start`"),
            (r#"{"scripts":{"start":3}}"#, "no `scripts.start`"),
            (r#"{"scripts":[]}"#, "no `scripts.start`"),
        ];
        for (text, expected) in table {
            let err = Package::parse(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
