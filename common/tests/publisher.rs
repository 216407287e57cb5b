//! The services' producer survives a broker that stalls long enough for
//! messages to time out, on a tansu of the test's own (the shared one
//! stays up for the other tests).

use common::kafka::{self, Publisher};
use common::settings::{Env, KafkaSettings};
use testkit::servers::Server;

async fn send_all(publisher: &Publisher, topic: &str, n: usize) -> Vec<bool> {
    let sends = (0..n).map(|i| async move { publisher.send_json(topic, &i.to_string(), &i).await });
    futures::future::join_all(sends)
        .await
        .iter()
        .map(|r| {
            if let Err(e) = r {
                eprintln!("send: {e}");
            }
            r.is_ok()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_producer_recovers_after_messages_time_out_on_a_stalled_broker() {
    let port = testkit::free_port();
    let broker = Server::tansu(port).await;
    let brokers = format!("127.0.0.1:{port}");
    let env = Env::from_pairs([("LZ_KAFKA_BROKERS", brokers.as_str())]);
    let k = KafkaSettings::from_env(&env).expect("settings");
    kafka::ensure_topics(&k).await.expect("topics");
    let publisher = Publisher::new(&k).expect("publisher");
    assert_eq!(send_all(&publisher, &k.jobs_topic, 4).await, [true; 4]);

    // The broker stalls past the produce timeout: these messages fail.
    broker.signal("STOP");
    let stalled = send_all(&publisher, &k.jobs_topic, 20).await;
    broker.signal("CONT");
    assert!(stalled.iter().all(|ok| !ok), "{stalled:?}");

    // Back: the next messages go through. (tansu fences the producer
    // whose messages timed out; without a new producer every later
    // message fails the same way, for good.)
    for _ in 0..3 {
        assert_eq!(send_all(&publisher, &k.jobs_topic, 4).await, [true; 4]);
    }
}
