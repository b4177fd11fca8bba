//! The plugin configurations shown in README.md are accepted by the plugins' own parsers, so
//! the README cannot drift from what the plugins take.

use infergate_core::affinity::AffinityConfig;
use infergate_core::auth::AuthConfig;
use infergate_core::config::parse;
use infergate_core::ratelimit::RateLimitConfig;

/// The first ```json block after `marker` in the README.
fn json_after(readme: &str, marker: &str) -> String {
    let start = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README lacks {marker}"));
    let rest = &readme[start..];
    let open = rest.find("```json\n").expect("json block") + "```json\n".len();
    let close = rest[open..].find("```").expect("block end");
    rest[open..open + close].to_string()
}

#[test]
fn readme_plugin_configurations_parse() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    parse::<AuthConfig>(json_after(&readme, "**auth** —").as_bytes()).expect("auth example");
    parse::<RateLimitConfig>(json_after(&readme, "**ratelimit** —").as_bytes())
        .expect("ratelimit example");
    parse::<AffinityConfig>(json_after(&readme, "**affinity**").as_bytes())
        .expect("affinity example");
}
