//! Translation from Kuadrant `AuthPolicy` / `RateLimitPolicy` / `TokenRateLimitPolicy` and llm-d
//! `EndpointPickerConfig` to infergate plugin configuration and deployable manifests.
//!
//! The translator lands with the policies issue; the hand-written manifests in `policies/`
//! document the deployment until then.
