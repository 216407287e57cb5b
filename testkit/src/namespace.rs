//! One test's (or one benchmark platform's) share of the shared stack:
//! topics, consumer groups and a database of its own, so that tests run in
//! parallel without seeing each other's data. Job ids are UUIDs, so the
//! bucket is shared.

use common::settings::{Env, KafkaSettings, SettingsError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// A fresh namespace: `prefix` and a random suffix.
    pub fn new(prefix: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self::named(&format!("{prefix}{}", &id[..16]))
    }

    /// The namespace of a given name (the benchmark names its platforms).
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The variables that put a service in this namespace.
    pub fn env(&self) -> Vec<(String, String)> {
        let n = &self.name;
        [
            ("LZ_JOBS_TOPIC", format!("{n}.jobs")),
            ("LZ_STATUS_TOPIC", format!("{n}.status")),
            ("LZ_IGNORE_TOPIC", format!("{n}.ignore")),
            ("LZ_WORKERS_GROUP", format!("{n}-workers")),
            ("LZ_RECORDER_GROUP", format!("{n}-recorder")),
            ("LZ_OBSERVER_GROUP", format!("{n}-observer")),
            // MongoDB database names may not hold dots.
            ("LZ_MONGO_DB", n.replace('.', "_")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The stack's variables, then this namespace's, then `extra`: later
    /// pairs win when read through `Env::from_pairs`.
    pub fn layered(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all = crate::stack_env();
        all.extend(self.env());
        all.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        all
    }

    /// `layered` as an `Env` for a service's settings.
    pub fn settings_env(&self, extra: &[(&str, &str)]) -> Env {
        let all = self.layered(extra);
        Env::from_pairs(all.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The Kafka settings of this namespace with `partitions` jobs
    /// partitions (and 2 status partitions).
    pub fn kafka(&self, partitions: i32) -> Result<KafkaSettings, SettingsError> {
        let jobs = partitions.to_string();
        KafkaSettings::from_env(
            &self.settings_env(&[("LZ_JOBS_PARTITIONS", &jobs), ("LZ_STATUS_PARTITIONS", "2")]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_carries_the_namespace_and_the_database_has_no_dot() {
        let ns = Namespace::named("run.7-a");
        let env: std::collections::HashMap<_, _> = ns.env().into_iter().collect();
        assert_eq!(env["LZ_JOBS_TOPIC"], "run.7-a.jobs");
        assert_eq!(env["LZ_WORKERS_GROUP"], "run.7-a-workers");
        assert_eq!(env["LZ_MONGO_DB"], "run_7-a");
        assert_eq!(env.len(), 7);
        assert_ne!(Namespace::new("t"), Namespace::new("t"));
    }

    #[test]
    fn later_layers_win() {
        let ns = Namespace::named("n");
        let k = KafkaSettings::from_env(&ns.settings_env(&[("LZ_JOBS_TOPIC", "mine")])).unwrap();
        assert_eq!(k.jobs_topic, "mine");
        assert_eq!(ns.kafka(3).unwrap().jobs_partitions, 3);
    }
}
