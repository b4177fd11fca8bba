//! vLLM-style error answers: `{"error": {"message", "type", "param", "code"}}` (the shape vLLM's
//! OpenAI server returns since it nested errors like OpenAI does), with the HTTP status in `code`.

use serde_json::json;

/// An error answer of the OpenAI API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// vLLM error type name (`BadRequestError`, `NotFoundError`, ...).
    pub kind: &'static str,
    /// Human-readable reason.
    pub message: String,
    /// The offending request field, if one.
    pub param: Option<&'static str>,
}

impl ApiError {
    /// 400 about `param`.
    pub fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: 400,
            kind: "BadRequestError",
            message: message.into(),
            param,
        }
    }

    /// 404 for a model this server does not serve.
    pub fn model_not_found(model: &str) -> Self {
        Self {
            status: 404,
            kind: "NotFoundError",
            message: format!("The model `{model}` does not exist."),
            param: Some("model"),
        }
    }

    /// 413 for an oversized body.
    pub fn too_large(limit: usize) -> Self {
        Self {
            status: 413,
            kind: "BadRequestError",
            message: format!("request body larger than {limit} bytes"),
            param: None,
        }
    }

    /// 503 when the engine is gone.
    pub fn unavailable() -> Self {
        Self {
            status: 503,
            kind: "ServiceUnavailableError",
            message: "the engine is not running".into(),
            param: None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.status,
            }
        })
        .to_string()
    }
}
