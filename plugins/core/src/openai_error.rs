//! OpenAI-style JSON error bodies, so clients written against the OpenAI API show gateway
//! errors the way they show the model server's.

use serde::Serialize;

/// The kind of failure, which fixes the HTTP status and the OpenAI `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request body or parameters are malformed.
    BadRequest,
    /// 401: missing or invalid credential.
    Unauthenticated,
    /// 403: a valid identity without access.
    Forbidden,
    /// 413: request body larger than the configured limit.
    PayloadTooLarge,
    /// 429: a rate limit was hit.
    RateLimited,
    /// 500: the gateway itself failed.
    Internal,
    /// 503: no endpoint can serve the request.
    Unavailable,
}

impl ErrorKind {
    /// HTTP status code for this kind.
    pub fn status(self) -> u32 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthenticated => 401,
            Self::Forbidden => 403,
            Self::PayloadTooLarge => 413,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::Unavailable => 503,
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Self::BadRequest | Self::PayloadTooLarge => "invalid_request_error",
            Self::Unauthenticated => "authentication_error",
            Self::Forbidden => "permission_error",
            Self::RateLimited => "rate_limit_error",
            Self::Internal | Self::Unavailable => "server_error",
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: &'a str,
}

/// Renders `{"error":{"message":…,"type":…,"param":null,"code":…}}`.
pub fn body(kind: ErrorKind, code: &str, message: &str) -> Vec<u8> {
    let envelope = Envelope {
        error: Detail {
            message,
            kind: kind.type_name(),
            param: None,
            code,
        },
    };
    // Serializing plain strings into a Vec cannot fail; fall back to a fixed body regardless.
    serde_json::to_vec(&envelope).unwrap_or_else(|_| {
        br#"{"error":{"message":"internal error","type":"server_error","param":null,"code":"internal"}}"#
            .to_vec()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openai_shape_and_escapes() {
        let b = body(ErrorKind::RateLimited, "rate_limited", "too \"many\"\n");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert_eq!(v["error"]["code"], "rate_limited");
        assert_eq!(v["error"]["message"], "too \"many\"\n");
        assert!(v["error"]["param"].is_null());
        assert_eq!(ErrorKind::RateLimited.status(), 429);
    }
}
