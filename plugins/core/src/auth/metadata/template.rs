//! Values built from the authorization JSON: a metadata call's body, body parameters, headers,
//! path placeholders and cache key.
//!
//! The configuration form ([`ValueTemplate`]) is what the translator emits for AuthPolicy's
//! `body` / `bodyParameters` / `headers` / `cache.key` (a `value`, a `selector`, or a CEL
//! `expression` compiled to a structure of attributes and literals). [`Compiled`] is its checked
//! form, rendered once per request.

use crate::auth::selector::Selector;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Deepest template accepted (objects and lists nested).
pub const MAX_TEMPLATE_DEPTH: usize = 8;

/// Most nodes one template may have.
pub const MAX_TEMPLATE_NODES: usize = 64;

/// A value built per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ValueTemplate {
    /// A static value.
    Value(Value),
    /// An Authorino selector; a path the JSON lacks gives `null` (Authorino's selector rule).
    Selector(String),
    /// An attribute a CEL expression names; a path the JSON lacks is an error (CEL's rule), so
    /// the call is not made and `auth.metadata.<name>` stays absent.
    Attribute(String),
    /// An Authorino string template: text with `{selector}` placeholders (a missing value is
    /// the empty string; `{` and `}` are written `\{` and `\}` in text).
    Template(String),
    /// An object of templates (a CEL map literal).
    Object(BTreeMap<String, ValueTemplate>),
    /// A list of templates (a CEL list literal).
    List(Vec<ValueTemplate>),
}

/// A string template's pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// A `{selector}` placeholder.
    Placeholder(Selector),
}

/// A checked template.
#[derive(Debug, Clone, PartialEq)]
pub enum Compiled {
    /// A static value.
    Value(Value),
    /// Selector; `required` when a missing value is an error.
    Select {
        /// The selector.
        selector: Selector,
        /// Missing is an error (CEL) rather than `null` (Authorino selector).
        required: bool,
    },
    /// A string template.
    Template(Vec<Piece>),
    /// An object.
    Object(Vec<(String, Compiled)>),
    /// A list.
    List(Vec<Compiled>),
}

/// A value a template needed but the authorization JSON does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing(pub String);

/// Parses `text {a.b} more {c}` into pieces; `\{`, `\}` and `\\` escape.
pub fn parse_pieces(src: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = src.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ ('{' | '}' | '\\')) => text.push(n),
                Some(n) => {
                    text.push('\\');
                    text.push(n);
                }
                None => text.push('\\'),
            },
            '{' => {
                let mut sel = String::new();
                let mut depth = 0usize;
                let mut closed = false;
                for n in chars.by_ref() {
                    match n {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            closed = true;
                            break;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                    sel.push(n);
                }
                if !closed {
                    return Err(format!("`{src}`: a `{{` placeholder is not closed"));
                }
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(Piece::Placeholder(Selector::parse(&sel)?));
            }
            '}' => return Err(format!("`{src}`: `}}` without `{{` (write `\\}}`)")),
            _ => text.push(c),
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    Ok(out)
}

impl Compiled {
    /// Checks a template; errors say what is wrong (the caller names the field).
    pub fn compile(t: &ValueTemplate) -> Result<Self, String> {
        let mut nodes = 0usize;
        Self::compile_at(t, 0, &mut nodes)
    }

    fn compile_at(t: &ValueTemplate, depth: usize, nodes: &mut usize) -> Result<Self, String> {
        *nodes += 1;
        if *nodes > MAX_TEMPLATE_NODES {
            return Err(format!("a template has at most {MAX_TEMPLATE_NODES} nodes"));
        }
        if depth > MAX_TEMPLATE_DEPTH {
            return Err(format!(
                "a template nests at most {MAX_TEMPLATE_DEPTH} levels"
            ));
        }
        Ok(match t {
            ValueTemplate::Value(v) => Self::Value(v.clone()),
            ValueTemplate::Selector(s) => Self::Select {
                selector: Selector::parse(s)?,
                required: false,
            },
            ValueTemplate::Attribute(s) => Self::Select {
                selector: Selector::parse(s)?,
                required: true,
            },
            ValueTemplate::Template(s) => Self::Template(parse_pieces(s)?),
            ValueTemplate::Object(m) => Self::Object(
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), Self::compile_at(v, depth + 1, nodes)?)))
                    .collect::<Result<_, String>>()?,
            ),
            ValueTemplate::List(l) => Self::List(
                l.iter()
                    .map(|v| Self::compile_at(v, depth + 1, nodes))
                    .collect::<Result<_, String>>()?,
            ),
        })
    }

    /// Builds the value from the authorization JSON.
    pub fn render(&self, json: &Value) -> Result<Value, Missing> {
        Ok(match self {
            Self::Value(v) => v.clone(),
            Self::Select { selector, required } => match selector.select(json) {
                Some(v) => v,
                None if *required => return Err(Missing(selector.path().join("."))),
                None => Value::Null,
            },
            Self::Template(pieces) => Value::String(render_pieces(pieces, json, &|s| s.into())),
            Self::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    out.insert(k.clone(), v.render(json)?);
                }
                Value::Object(out)
            }
            Self::List(l) => {
                Value::Array(l.iter().map(|v| v.render(json)).collect::<Result<_, _>>()?)
            }
        })
    }

    /// Renders to text: a string as is, anything else as JSON (Authorino's stringify).
    pub fn render_text(&self, json: &Value) -> Result<String, Missing> {
        Ok(stringify(&self.render(json)?))
    }
}

/// A value as text: a string as is, `null` as empty, anything else as JSON.
pub fn stringify(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Renders template pieces, passing each selected value's text through `escape`.
pub fn render_pieces(pieces: &[Piece], json: &Value, escape: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Placeholder(s) => {
                let v = s.select(json).unwrap_or(Value::Null);
                out.push_str(&escape(&stringify(&v)));
            }
        }
    }
    out
}

/// Percent-encodes everything but RFC 3986's unreserved characters, so a value placed in a
/// path cannot add segments, a query or a fragment.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(v: Value) -> Compiled {
        Compiled::compile(&serde_json::from_value(v).unwrap()).unwrap()
    }

    #[test]
    fn renders_the_maas_tier_body() {
        // `{ "groups": auth.identity.user.groups }`, as the translator compiles it.
        let body = t(json!({"object": {"groups": {"attribute": "auth.identity.user.groups"}}}));
        let auth = json!({"auth": {"identity": {"user": {"username": "alice", "groups": ["tier-premium", "system:authenticated"]}}}});
        assert_eq!(
            body.render(&auth).unwrap(),
            json!({"groups": ["tier-premium", "system:authenticated"]})
        );
        // CEL: a missing attribute is an error; a selector gives null.
        let anon = json!({"auth": {"identity": {"user": {"username": "x"}}}});
        assert_eq!(
            body.render(&anon),
            Err(Missing("auth.identity.user.groups".into()))
        );
        let sel = t(json!({"object": {"groups": {"selector": "auth.identity.user.groups"}}}));
        assert_eq!(sel.render(&anon).unwrap(), json!({"groups": null}));
    }

    #[test]
    fn string_templates_and_lists() {
        let key = t(json!({"template": "{auth.identity.user.username}:{auth.metadata.tier.tier}"}));
        let j = json!({"auth": {"identity": {"user": {"username": "bob"}}, "metadata": {"tier": {"tier": "free"}}}});
        assert_eq!(key.render_text(&j).unwrap(), "bob:free");
        let missing = json!({"auth": {"identity": {"user": {"username": "bob"}}}});
        assert_eq!(key.render_text(&missing).unwrap(), "bob:");
        let escaped = t(json!({"template": r"\{literal\} {a}"}));
        assert_eq!(
            escaped.render_text(&json!({"a": 1})).unwrap(),
            "{literal} 1"
        );
        let l = t(json!({"list": [{"value": "x"}, {"selector": "a"}, {"object": {}}]}));
        assert_eq!(
            l.render(&json!({"a": true})).unwrap(),
            json!(["x", true, {}])
        );
        assert_eq!(stringify(&json!({"a": 1})), r#"{"a":1}"#);
    }

    #[test]
    fn refuses_bad_templates() {
        for bad in [
            json!({"template": "{unclosed"}),
            json!({"template": "stray}"}),
            json!({"template": "{a.@nope}"}),
            json!({"selector": ""}),
        ] {
            let v: ValueTemplate = serde_json::from_value(bad.clone()).unwrap();
            assert!(Compiled::compile(&v).is_err(), "{bad}");
        }
        // Too deep and too many nodes.
        let mut deep = json!({"value": 1});
        for _ in 0..=MAX_TEMPLATE_DEPTH {
            deep = json!({"list": [deep]});
        }
        let v: ValueTemplate = serde_json::from_value(deep).unwrap();
        assert!(Compiled::compile(&v).unwrap_err().contains("nests"));
        let wide: BTreeMap<String, Value> = (0..MAX_TEMPLATE_NODES)
            .map(|i| (format!("k{i}"), json!({"value": i})))
            .collect();
        let v: ValueTemplate = serde_json::from_value(json!({"object": wide})).unwrap();
        assert!(Compiled::compile(&v).unwrap_err().contains("nodes"));
        // Unknown kinds are refused by the parser.
        assert!(serde_json::from_value::<ValueTemplate>(json!({"expression": "a"})).is_err());
    }

    #[test]
    fn percent_encoding_keeps_values_inside_one_segment() {
        assert_eq!(percent_encode("a b/../c?d#e"), "a%20b%2F..%2Fc%3Fd%23e");
        assert_eq!(percent_encode("tier-1_x.y~"), "tier-1_x.y~");
        let p = parse_pieces("/v1/users/{auth.identity.user.username}/tier").unwrap();
        let j = json!({"auth": {"identity": {"user": {"username": "sys:sa/x"}}}});
        assert_eq!(
            render_pieces(&p, &j, &percent_encode),
            "/v1/users/sys%3Asa%2Fx/tier"
        );
    }
}
