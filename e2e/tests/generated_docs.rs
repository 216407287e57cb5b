//! Documents generated from the code: `docs/configuration.md` (its table)
//! and `docs/settings.json` from the settings declarations of every crate,
//! `docs/openapi.json` from the API's routes and types. These tests fail
//! when a committed copy is out of date; `make docs` (`LZ_BLESS=1`) rewrites
//! them.

use std::path::PathBuf;

use common::settings::{reference_json, reference_table, Group, LOGGING, SHARED};

const BEGIN: &str = "<!-- BEGIN generated from the settings declarations: make docs -->\n";
const END: &str = "<!-- END generated -->\n";

fn groups() -> Vec<&'static Group> {
    let mut all: Vec<&Group> = SHARED.to_vec();
    all.extend(frontend::settings::GROUPS);
    all.extend(observer::settings::GROUPS);
    all.extend(worker::settings::GROUPS);
    all.push(&LOGGING);
    all
}

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn bless() -> bool {
    std::env::var("LZ_BLESS").is_ok_and(|v| v == "1")
}

#[test]
fn the_configuration_table_is_generated_from_the_declarations() {
    let text =
        std::fs::read_to_string(docs().join("configuration.md")).expect("docs/configuration.md");
    let (start, end) = match (text.find(BEGIN), text.find(END)) {
        (Some(start), Some(end)) if start < end => (start + BEGIN.len(), end),
        _ => panic!("docs/configuration.md lacks the generated-table markers"),
    };
    let table = reference_table(&groups());
    let wanted = format!("{}{table}{}", &text[..start], &text[end..]);
    check_or_bless("configuration.md", &wanted);
}

/// Rewrites `name` under `docs/` with `wanted` (bless), or fails when the
/// committed copy differs.
fn check_or_bless(name: &str, wanted: &str) {
    let path = docs().join(name);
    if bless() {
        std::fs::write(&path, wanted).unwrap_or_else(|e| panic!("write docs/{name}: {e}"));
    } else {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            text == wanted,
            "docs/{name} is out of date: run `make docs`"
        );
    }
}

#[test]
fn the_settings_list_for_tools_is_generated_from_the_declarations() {
    check_or_bless("settings.json", &reference_json(&groups()));
}

#[test]
fn every_setting_is_declared_once() {
    let mut seen = std::collections::HashSet::new();
    for group in groups() {
        for s in group.settings {
            assert!(seen.insert(s.name), "{} is declared twice", s.name);
        }
    }
    assert!(seen.len() > 60, "only {} settings found", seen.len());
}

#[test]
fn the_committed_api_document_is_the_one_the_code_generates() {
    check_or_bless("openapi.json", &frontend::openapi::json());
}
