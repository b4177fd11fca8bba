//! Which OpenAI API a request targets, derived from its path.

/// The OpenAI inference APIs whose bodies this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiKind {
    /// `POST /v1/chat/completions`: `messages`.
    ChatCompletions,
    /// `POST /v1/completions`: `prompt`.
    Completions,
    /// `POST /v1/responses`: `instructions` and `input`.
    Responses,
}

impl ApiKind {
    /// Maps a request path to the API it targets.
    ///
    /// The path may carry a routing prefix (`/my-first-model/qwen3-0-6b/v1/chat/completions`),
    /// a query string and a fragment, and trailing slashes; the API is named by its last path
    /// segments, which must match exactly (case-sensitive, as vLLM routes them). Anything else,
    /// including `/v1/responses/{id}`, is `None`.
    pub fn from_path(path: &str) -> Option<Self> {
        let end = path.find(['?', '#']).unwrap_or(path.len());
        let path = path.get(..end)?.trim_end_matches('/');
        if path.ends_with("/v1/chat/completions") {
            Some(Self::ChatCompletions)
        } else if path.ends_with("/v1/completions") {
            Some(Self::Completions)
        } else if path.ends_with("/v1/responses") {
            Some(Self::Responses)
        } else {
            None
        }
    }

    /// Whether streaming responses of this API carry usage only when the request sets
    /// `stream_options.include_usage` (Chat Completions and Completions; the Responses API
    /// always reports usage in `response.completed`).
    pub fn usage_needs_stream_options(self) -> bool {
        matches!(self, Self::ChatCompletions | Self::Completions)
    }
}

#[cfg(test)]
mod tests {
    use super::ApiKind::{self, *};

    #[test]
    fn maps_paths_with_prefixes_queries_and_slashes() {
        let cases = [
            ("/v1/chat/completions", Some(ChatCompletions)),
            (
                "/my-first-model/qwen3-0-6b/v1/chat/completions",
                Some(ChatCompletions),
            ),
            (
                "/v1/chat/completions?api-version=1&x=/v1/completions",
                Some(ChatCompletions),
            ),
            ("/v1/chat/completions/", Some(ChatCompletions)),
            ("/v1/completions", Some(Completions)),
            ("/pfx/v1/completions#frag", Some(Completions)),
            ("/v1/responses", Some(Responses)),
            ("/a/b/v1/responses?stream=true", Some(Responses)),
            ("/v1/responses/resp_123", None),
            ("/v1/models", None),
            ("/v1/embeddings", None),
            ("/xv1/completions", None),
            ("/V1/chat/completions", None),
            ("", None),
            ("?/v1/completions", None),
        ];
        for (path, want) in cases {
            assert_eq!(ApiKind::from_path(path), want, "{path}");
        }
    }

    #[test]
    fn only_chat_and_completions_need_stream_options() {
        assert!(ChatCompletions.usage_needs_stream_options());
        assert!(Completions.usage_needs_stream_options());
        assert!(!Responses.usage_needs_stream_options());
    }
}
