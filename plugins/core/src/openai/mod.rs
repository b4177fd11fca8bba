//! OpenAI request/response body and SSE parsing (being built).
