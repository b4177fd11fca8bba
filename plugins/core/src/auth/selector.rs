//! Authorino's JSON-path selectors (a subset of gjson), read from the authorization JSON
//! (`{"context": {"request": {"http": …}}, "auth": {"identity": …, "metadata": …}}`).
//!
//! - segments separated by `.`; a `\.` is a literal dot in a key
//!   (`auth.identity.metadata.annotations.secret\.kuadrant\.io/user-id`);
//! - a numeric segment indexes an array; `#` is an array's length;
//! - modifiers after `.@` or `|@`: `@case:lower`, `@case:upper`,
//!   `@extract:{"sep":" ","pos":1}` (split a string, take one part; `sep` defaults to a space),
//!   `@strip` (trim whitespace). Unknown modifiers are refused when the selector is parsed.

use serde_json::Value;

/// Longest selector accepted.
pub const MAX_SELECTOR_LEN: usize = 512;

/// Why a selector is refused (the configuration error names the field holding it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Empty, or longer than [`MAX_SELECTOR_LEN`].
    #[error("a selector must be 1 to {MAX_SELECTOR_LEN} bytes long")]
    Length,
    /// An `@extract` argument that is not JSON.
    #[error("`@extract` argument is not JSON: {0}")]
    ExtractArgument(String),
    /// `@extract` with an empty `sep`.
    #[error("`@extract` needs a non-empty `sep`")]
    EmptySeparator,
    /// `@extract` with a `pos` beyond the platform's integers.
    #[error("`@extract` `pos` is too large")]
    PositionTooLarge,
    /// A modifier that is not supported (its text after `@`).
    #[error(
        "modifier `@{0}` is not supported (supported: @case:lower, @case:upper, @extract, @strip)"
    )]
    UnknownModifier(String),
    /// A path segment after a modifier, in this selector.
    #[error("`{0}`: path segments after a modifier are not supported")]
    PathAfterModifier(String),
    /// An empty path segment, in this selector.
    #[error("`{0}` has an empty path segment")]
    EmptySegment(String),
    /// Only modifiers, in this selector.
    #[error("`{0}` selects nothing")]
    NoPath(String),
}

/// For callers that report configuration errors as text.
impl From<SelectorError> for String {
    fn from(e: SelectorError) -> Self {
        e.to_string()
    }
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    path: Vec<String>,
    modifiers: Vec<Modifier>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Modifier {
    Lower,
    Upper,
    Strip,
    Extract { sep: String, pos: usize },
}

fn modifier(src: &str) -> Result<Modifier, SelectorError> {
    let (name, arg) = src.split_once(':').unwrap_or((src, ""));
    match (name, arg) {
        ("case", "lower") => Ok(Modifier::Lower),
        ("case", "upper") => Ok(Modifier::Upper),
        ("strip", "") => Ok(Modifier::Strip),
        ("extract", arg) => {
            let v: Value = if arg.is_empty() {
                Value::Object(Default::default())
            } else {
                serde_json::from_str(arg)
                    .map_err(|e| SelectorError::ExtractArgument(e.to_string()))?
            };
            let sep = v.get("sep").and_then(Value::as_str).unwrap_or(" ");
            let pos = v.get("pos").and_then(Value::as_u64).unwrap_or(0);
            if sep.is_empty() {
                return Err(SelectorError::EmptySeparator);
            }
            Ok(Modifier::Extract {
                sep: sep.to_string(),
                pos: usize::try_from(pos).map_err(|_| SelectorError::PositionTooLarge)?,
            })
        }
        _ => Err(SelectorError::UnknownModifier(src.to_string())),
    }
}

impl Selector {
    /// Parses a selector.
    pub fn parse(src: &str) -> Result<Self, SelectorError> {
        let src = src.trim();
        if src.is_empty() || src.len() > MAX_SELECTOR_LEN {
            return Err(SelectorError::Length);
        }
        // Modifiers start at the first unescaped `.@` or `|@`.
        let mut path = Vec::new();
        let mut modifiers = Vec::new();
        let mut in_mods = false;
        for raw in split_unescaped_keep(src) {
            match raw.strip_prefix('@') {
                Some(m) if !raw.escaped_at => {
                    in_mods = true;
                    modifiers.push(modifier(m)?);
                }
                _ if in_mods => return Err(SelectorError::PathAfterModifier(src.to_string())),
                _ => {
                    if raw.text.is_empty() {
                        return Err(SelectorError::EmptySegment(src.to_string()));
                    }
                    path.push(raw.text);
                }
            }
        }
        if path.is_empty() {
            return Err(SelectorError::NoPath(src.to_string()));
        }
        Ok(Self { path, modifiers })
    }

    /// The path segments (unescaped).
    pub fn path(&self) -> &[String] {
        &self.path
    }

    /// Whether this selector has modifiers.
    pub fn has_modifiers(&self) -> bool {
        !self.modifiers.is_empty()
    }

    /// Reads the selected value; `None` when a segment is missing.
    pub fn select(&self, root: &Value) -> Option<Value> {
        let mut at = root;
        let len;
        for seg in &self.path {
            at = match at {
                Value::Object(m) => m.get(seg)?,
                Value::Array(a) if seg == "#" => {
                    len = Value::from(a.len());
                    return self.apply(len);
                }
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        self.apply(at.clone())
    }

    fn apply(&self, mut v: Value) -> Option<Value> {
        for m in &self.modifiers {
            let Value::String(s) = &v else {
                // Authorino applies string modifiers to strings only; others pass through.
                continue;
            };
            v = Value::String(match m {
                Modifier::Lower => s.to_lowercase(),
                Modifier::Upper => s.to_uppercase(),
                Modifier::Strip => s.trim().to_string(),
                Modifier::Extract { sep, pos } => s.split(sep.as_str()).nth(*pos)?.to_string(),
            });
        }
        Some(v)
    }
}

struct Part {
    text: String,
    escaped_at: bool,
}

impl std::ops::Deref for Part {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

/// Splits on unescaped `.` and `|`, except inside an `@extract:{…}` JSON argument.
fn split_unescaped_keep(src: &str) -> Vec<Part> {
    let mut parts = vec![Part {
        text: String::new(),
        escaped_at: false,
    }];
    let mut chars = src.chars().peekable();
    let mut depth = 0usize;
    while let Some(c) = chars.next() {
        let Some(last) = parts.last_mut() else { break };
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    if last.text.is_empty() && n == '@' {
                        last.escaped_at = true;
                    }
                    last.text.push(n);
                }
            }
            '{' => {
                depth += 1;
                last.text.push(c);
            }
            '}' => {
                depth = depth.saturating_sub(1);
                last.text.push(c);
            }
            '.' | '|' if depth == 0 => parts.push(Part {
                text: String::new(),
                escaped_at: false,
            }),
            _ => last.text.push(c),
        }
    }
    parts
}

/// Converts a selected value to the strings an attribute carries: a string as is, numbers and
/// booleans in their JSON form, an array element by element; objects and null carry nothing.
pub fn scalars(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Bool(b) => vec![b.to_string()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| match x {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(s: &str, v: &Value) -> Option<Value> {
        Selector::parse(s).unwrap().select(v)
    }

    #[test]
    fn reads_paths_with_escaped_dots_indices_and_modifiers() {
        let doc = json!({"auth": {"identity": {
            "metadata": {"annotations": {"secret.kuadrant.io/user-id": "alice"}, "labels": {"tier": "Free"}},
            "groups": ["a", "b"],
        }}, "context": {"request": {"http": {"headers": {"authorization": "APIKEY abc"}}}}});
        assert_eq!(
            sel(
                r"auth.identity.metadata.annotations.secret\.kuadrant\.io/user-id",
                &doc
            ),
            Some(json!("alice"))
        );
        assert_eq!(
            sel("auth.identity.metadata.labels.tier.@case:lower", &doc),
            Some(json!("free"))
        );
        assert_eq!(
            sel("auth.identity.metadata.labels.tier|@case:upper", &doc),
            Some(json!("FREE"))
        );
        assert_eq!(sel("auth.identity.groups.1", &doc), Some(json!("b")));
        assert_eq!(sel("auth.identity.groups.#", &doc), Some(json!(2)));
        assert_eq!(
            sel(
                r#"context.request.http.headers.authorization.@extract:{"sep":" ","pos":1}"#,
                &doc
            ),
            Some(json!("abc"))
        );
        assert_eq!(sel("auth.identity.missing", &doc), None);
        assert_eq!(sel("auth.identity.groups.7", &doc), None);
        assert_eq!(
            sel(
                r#"context.request.http.headers.authorization.@extract:{"pos":5}"#,
                &doc
            ),
            None
        );
    }

    #[test]
    fn refuses_malformed_selectors() {
        for bad in [
            "",
            "a..b",
            "a.@nope",
            "a.@extract:{bad",
            "a.@case:lower.b",
            r#"a.@extract:{"sep":""}"#,
        ] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
        assert!(Selector::parse(&"a.".repeat(400)).is_err());
        assert_eq!(scalars(&json!(["x", 1, true, {}])), vec!["x", "1", "true"]);
        assert!(scalars(&json!({"a": 1})).is_empty());
    }
}
