//! `lanzadera-testkit namespace NAME`: prints the variables of a namespace
//! as one JSON object, for the benchmark (written in Python) to use the
//! same names as the Rust tests.

use std::process::ExitCode;

use testkit::Namespace;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [command, name] if command == "namespace" => {
            let vars: serde_json::Map<String, serde_json::Value> = Namespace::named(name)
                .env()
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            println!("{}", serde_json::Value::Object(vars));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: lanzadera-testkit namespace NAME");
            ExitCode::from(2)
        }
    }
}
