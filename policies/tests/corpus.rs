//! The Kuadrant documentation corpus: every AuthPolicy / RateLimitPolicy /
//! TokenRateLimitPolicy shape in kuadrant-operator's `doc/` and `examples/`, each written as our
//! own document in `tests/corpus/` (its first line names the page it mirrors), either
//! translates or is refused with a named reason that policies/README.md documents.
//!
//! Each file says what it expects on its second line:
//! `# expect: translate` or `# expect: refuse <field> | <reason>` — the error must name that
//! field and contain the reason, and the reason must appear in README's table of refusals.
//! Run with `--nocapture` to see the count the README states.

mod common;

use common::*;
use std::path::PathBuf;

enum Expect {
    Translate,
    Refuse { field: String, reason: String },
}

fn expectation(text: &str, file: &str) -> Expect {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .unwrap_or_else(|| panic!("{file}: no `# expect:` line"));
    if line.trim() == "translate" {
        return Expect::Translate;
    }
    let rest = line
        .strip_prefix("refuse ")
        .unwrap_or_else(|| panic!("{file}: bad expectation `{line}`"));
    let (field, reason) = rest
        .split_once(" | ")
        .unwrap_or_else(|| panic!("{file}: `refuse <field> | <reason>`"));
    Expect::Refuse {
        field: field.trim().to_string(),
        reason: reason.trim().to_string(),
    }
}

#[test]
fn every_documented_policy_shape_translates_or_is_refused_with_a_documented_reason() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("policies/README.md");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus lost documents");
    let (mut translated, mut refused) = (0, 0);
    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(path).expect("read");
        assert!(
            text.starts_with("# mirrors: Kuadrant/kuadrant-operator "),
            "{name}: the first line names the page it mirrors"
        );
        let outcome = render_yaml(&format!("{TOPOLOGY}---\n{text}"));
        match (expectation(&text, &name), outcome) {
            (Expect::Translate, Ok(_)) => translated += 1,
            (Expect::Refuse { field, reason }, Err(e)) => {
                if e.field != field || !e.to_string().contains(&reason) {
                    failures.push(format!(
                        "{name}: expected refusal at `{field}` ({reason}), got `{}`: {e}",
                        e.field
                    ));
                } else if !readme
                    .lines()
                    .any(|l| l.starts_with('|') && l.contains(&reason))
                {
                    failures.push(format!(
                        "{name}: reason `{reason}` is not documented in policies/README.md"
                    ));
                } else {
                    refused += 1;
                }
            }
            (Expect::Translate, Err(e)) => failures.push(format!(
                "{name}: expected to translate, got `{}`: {e}",
                e.field
            )),
            (Expect::Refuse { field, .. }, Ok(_)) => failures.push(format!(
                "{name}: expected a refusal at `{field}`, but it translated"
            )),
        }
    }
    println!(
        "corpus: {translated} translated / {refused} refused with a documented reason / {} total",
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
