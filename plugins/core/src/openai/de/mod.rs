//! Small serde building blocks shared by the OpenAI body parsers.

mod digest;
mod obj;
mod scalar;
mod text;

pub(crate) use digest::{JsonDigest, MediaDigest};
pub(crate) use obj::{Expected, Obj};
pub(crate) use scalar::{opt_bool, opt_count};
pub(crate) use text::{Text, TextLen};
