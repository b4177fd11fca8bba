//! Structs that must be JSON objects.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::marker::PhantomData;

/// Names what an [`Obj`] expects, for error messages (`expected a message object`).
pub(crate) trait Expected {
    const EXPECTED: &'static str;
}

/// A struct that must be a JSON object. serde's derived structs also accept an array of
/// their fields in order, which no OpenAI client sends and no model server accepts; this
/// wrapper refuses arrays (and everything else) with a clear message.
#[derive(Debug)]
pub(crate) struct Obj<T>(pub T);

impl<T> std::ops::Deref for Obj<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de> + Expected> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjVisitor(PhantomData))
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de> + Expected> Visitor<'de> for ObjVisitor<T> {
    type Value = Obj<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(T::EXPECTED)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Point {
        #[allow(dead_code)]
        x: u32,
    }

    impl Expected for Point {
        const EXPECTED: &'static str = "a point object";
    }

    #[test]
    fn obj_accepts_objects_only() {
        assert!(serde_json::from_str::<Obj<Point>>(r#"{"x":1}"#).is_ok());
        assert!(
            serde_json::from_str::<Point>("[1]").is_ok(),
            "serde's own leniency"
        );
        let e = serde_json::from_str::<Obj<Point>>("[1]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a point object"), "{e}");
        assert!(serde_json::from_str::<Obj<Point>>("null").is_err());
    }
}
