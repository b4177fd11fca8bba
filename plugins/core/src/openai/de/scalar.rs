//! Lenient optional counts and flags, as vLLM's pydantic models accept them.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// Largest integer a JSON float can carry exactly (2^53).
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// `deserialize_with` for an optional token count: a non-negative integer, `null` (= absent),
/// or a float with no fractional part (`100.0`), which vLLM's pydantic models also accept.
pub(crate) fn opt_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(CountVisitor)
}

struct CountVisitor;

impl Visitor<'_> for CountVisitor {
    type Value = Option<u64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a non-negative integer")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= MAX_EXACT_FLOAT {
            // Exact: integral and within f64's integer range.
            Ok(Some(v as u64))
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// `deserialize_with` for an optional flag: `true`, `false` or `null` (= absent).
pub(crate) fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    d.deserialize_any(BoolVisitor)
}

struct BoolVisitor;

impl Visitor<'_> for BoolVisitor {
    type Value = Option<bool>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Counts {
        #[serde(default, deserialize_with = "opt_count")]
        n: Option<u64>,
        #[serde(default, deserialize_with = "opt_bool")]
        b: Option<bool>,
    }

    fn counts(json: &str) -> Result<Counts, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn counts_accept_integers_integral_floats_and_null() {
        assert_eq!(counts(r#"{"n":7}"#).unwrap().n, Some(7));
        assert_eq!(counts(r#"{"n":100.0}"#).unwrap().n, Some(100));
        assert_eq!(counts(r#"{"n":null}"#).unwrap().n, None);
        assert_eq!(counts(r#"{}"#).unwrap().n, None);
        for bad in [
            r#"{"n":-1}"#,
            r#"{"n":1.5}"#,
            r#"{"n":"5"}"#,
            r#"{"n":1e300}"#,
            r#"{"n":true}"#,
        ] {
            let e = counts(bad).err().unwrap().to_string();
            assert!(e.contains("a non-negative integer"), "{bad}: {e}");
        }
    }

    #[test]
    fn bools_accept_only_bool_or_null() {
        assert_eq!(counts(r#"{"b":true}"#).unwrap().b, Some(true));
        assert_eq!(counts(r#"{"b":null}"#).unwrap().b, None);
        assert!(counts(r#"{"b":"true"}"#).is_err());
        assert!(counts(r#"{"b":1}"#).is_err());
    }
}
