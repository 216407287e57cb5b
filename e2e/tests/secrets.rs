//! A job's secrets reach its script and nowhere else a user or an operator
//! could look (`docs/contract.md` §2.3): not the API's answers, not the
//! database, not the status or ignore topics, not the metrics, not the
//! services' logs or folders, and the job's own logs show them masked.

mod support;

use std::path::Path;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use support::Client;
use testkit::platform::Platform;

/// Prints the secret whole, split over two writes with a pause between
/// (two reads of the pipe), from a grandchild, and on stderr; hands it back
/// reversed so the test can see it arrived.
const SCRIPT: &str = r#"
echo "token=$API_TOKEN"
head=${API_TOKEN%????}
printf 'split=%s' "$head"; sleep 0.3; printf '%s\n' "${API_TOKEN#"$head"}"
sh -c 'echo "from a child: $API_TOKEN"'
echo "on stderr: $API_TOKEN" >&2
echo "other=$OTHER_ONE"
printf '%s' "$API_TOKEN" | rev > output/reversed.txt
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_the_script_and_is_found_nowhere_else() {
    let mut platform = Platform::start(1, &[]).await;
    let token = platform.token(testkit::tokens::ALICE).await;
    let value = testkit::unique("tok");
    let other = testkit::unique("pw");

    let dir = platform.repos.join("prints-its-secret");
    testkit::repos::write_files(
        &dir,
        &testkit::repos::files(&testkit::repos::shell_job(SCRIPT)),
    );
    testkit::repos::commit_all(&dir);
    let url = format!("file://{}", dir.display());

    // A name the worker sets is refused, and names the rule.
    let refused = platform
        .http
        .post(format!("{}/api/jobs", platform.api))
        .bearer_auth(&token)
        .json(&json!({"url": url, "secrets": {"PATH": value}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let why = refused.text().await.unwrap();
    assert!(why.contains("is set by the worker"), "{why}");
    assert!(!why.contains(&value), "{why}");

    let id = platform
        .submit(
            &token,
            json!({"url": url, "secrets": {"API_TOKEN": value, "OTHER_ONE": other}}),
        )
        .await;
    let job = platform
        .wait(&token, &id, Duration::from_secs(60), |j| {
            j["status"] == "succeeded" || j["status"] == "failed"
        })
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["secretNames"], json!(["API_TOKEN", "OTHER_ONE"]));

    // The script had it.
    let reversed: String = value.chars().rev().collect();
    let file = job["outputFiles"][0].as_str().unwrap();
    assert_eq!(platform.download(&token, file).await, (200, reversed));

    // Its logs show it masked, however it was printed.
    let (_, stdout) = platform
        .download(&token, job["logs"]["stdout"].as_str().unwrap())
        .await;
    assert_eq!(
        stdout, "token=***\nsplit=***\nfrom a child: ***\nother=***\n",
        "stdout as stored"
    );
    let (_, stderr) = platform
        .download(&token, job["logs"]["stderr"].as_str().unwrap())
        .await;
    assert_eq!(stderr, "on stderr: ***\n");

    // Everywhere else a user or an operator could look.
    let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
    let api = [
        format!("/api/jobs/{id}"),
        "/api/jobs".to_string(),
        format!("/api/jobs/{id}/logs?stream=stdout"),
        format!("/api/jobs/{id}/logs?stream=stderr"),
        "/metrics".to_string(),
        "/health/load".to_string(),
    ]
    .map(|path| (&platform.api, path));
    let observer = ["/health", "/metrics/desired"].map(|path| (&platform.observer, path.into()));
    for (base, path) in api.into_iter().chain(observer) {
        let (_, body) = platform.download(&token, &format!("{base}{path}")).await;
        seen.push((format!("GET {base}{path}"), body.into_bytes()));
    }
    seen.extend(database(&platform).await);
    let kafka = platform.namespace.kafka(4).unwrap();
    for topic in [&kafka.status_topic, &kafka.cancel_topic] {
        seen.push((format!("topic {topic}"), topic_bytes(&kafka, topic)));
    }
    // The services' logs, work folders and the published repositories.
    platform.assert_running();
    // Stopped, so that their logs are complete.
    platform.services.clear();
    files_under(&platform.logs, &mut seen);

    assert!(seen.len() > 10, "looked in {} places", seen.len());
    for (place, bytes) in &seen {
        for secret in [&value, &other] {
            assert!(
                !contains(bytes, secret.as_bytes()),
                "a secret is in {place}: {}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    // The one place it is kept: the job message, which only workers read.
    let jobs = topic_bytes(&kafka, &kafka.jobs_topic);
    assert!(
        contains(&jobs, value.as_bytes()),
        "the search would have found it"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every document of the platform's database, as extended JSON.
async fn database(platform: &Platform) -> Vec<(String, Vec<u8>)> {
    let settings =
        common::settings::MongoSettings::from_env(&platform.namespace.settings_env(&[])).unwrap();
    let db = common::mongo::connect(&settings).await.unwrap();
    let mut all = Vec::new();
    for name in db.list_collection_names().await.unwrap() {
        let mut cursor = db
            .collection::<mongodb::bson::Document>(&name)
            .find(mongodb::bson::doc! {})
            .await
            .unwrap();
        let mut text = String::new();
        while cursor.advance().await.unwrap() {
            let doc = cursor.deserialize_current().unwrap();
            text.push_str(&Value::from(mongodb::bson::Bson::Document(doc)).to_string());
        }
        all.push((format!("collection {name}"), text.into_bytes()));
    }
    assert!(
        all.iter().any(|(n, _)| n == "collection jobs"),
        "read the jobs collection: {:?}",
        all.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    all
}

/// Every record of `topic` (keys and values), from the beginning to the
/// end it has now.
fn topic_bytes(kafka: &common::settings::KafkaSettings, topic: &str) -> Vec<u8> {
    let group = common::kafka::private_group("secrets-test");
    let consumer: BaseConsumer = common::kafka::direct_consumer(kafka, &group, 100, &[]).unwrap();
    let timeout = Duration::from_secs(5);
    let meta = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let partitions: Vec<i32> = meta.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut list = TopicPartitionList::new();
    let mut left = 0;
    for &p in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout).unwrap();
        left += (high - low).max(0);
        list.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut bytes = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while left > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic}: {left} records unread"
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            bytes.extend_from_slice(m.key().unwrap_or_default());
            bytes.extend_from_slice(m.payload().unwrap_or_default());
            left -= 1;
        }
    }
    bytes
}

fn files_under(dir: &Path, seen: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            files_under(&path, seen);
        } else if kind.is_file() {
            seen.push((path.display().to_string(), std::fs::read(&path).unwrap()));
        }
    }
}
