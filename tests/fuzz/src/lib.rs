//! Fuzz targets for every parser that sees untrusted bytes.
//!
//! Each [`Target`] takes arbitrary bytes and must neither panic (overflow checks are on in both
//! the `native` profile and `make fuzz`) nor allocate without bound; several also check a
//! property (a rewritten body still parses to the same request, a stream fed in pieces gives the
//! same events as fed whole, an encoded pick decodes back to what was encoded). The same
//! functions run three ways: the committed corpus replayed by `cargo test` (`tests/replay.rs`),
//! a bounded seeded random run there too, and coverage-guided libFuzzer runs (`make fuzz`, the
//! `infergate-fuzz` binary). Inputs that hold several parts split them on `\n--\n` ([`parts`]).

mod core_targets;
#[cfg(feature = "shim")]
mod shim_targets;

/// One fuzz target.
#[derive(Clone, Copy)]
pub struct Target {
    /// Name (also the corpus directory, `corpus/<name>`).
    pub name: &'static str,
    /// What it parses.
    pub about: &'static str,
    /// Runs one input.
    pub run: fn(&[u8]),
}

/// Every target built with the enabled features.
pub fn targets() -> Vec<Target> {
    #[allow(unused_mut)]
    let mut t = core_targets::TARGETS.to_vec();
    #[cfg(feature = "shim")]
    t.extend_from_slice(shim_targets::TARGETS);
    t
}

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    targets().into_iter().find(|t| t.name == name)
}

/// Splits `data` into at most `n` parts on the separator `\n--\n` (missing parts are empty).
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    const SEP: &[u8] = b"\n--\n";
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    while out.len() + 1 < n {
        match rest.windows(SEP.len()).position(|w| w == SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    while out.len() < n {
        out.push(&[]);
    }
    out
}

/// `bytes` as text, lossily (the parsers taking `&str` get whatever UTF-8 the fuzzer finds).
pub fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_split_on_the_separator_and_pad() {
        assert_eq!(
            parts(b"a\n--\nb\n--\nc", 2),
            vec![&b"a"[..], &b"b\n--\nc"[..]]
        );
        assert_eq!(parts(b"a", 3), vec![&b"a"[..], &b""[..], &b""[..]]);
    }

    #[test]
    fn target_names_are_unique() {
        let mut names: Vec<_> = targets().iter().map(|t| t.name).collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
