//! Settings the policies cannot carry: where the gateway reaches the kube-apiserver and the
//! identity providers, the pods' fallback addresses, images and names.

use std::collections::BTreeMap;

/// Translator settings (the CLI's flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// Gateway to render (`name` or `namespace/name`); the only one when `None`.
    pub gateway: Option<String>,
    /// Static fallback endpoints (`ip:port`) for the affinity plugin and host-shim.
    pub endpoints: Vec<String>,
    /// Service-account token the gateway presents to the kube-apiserver (TokenReview,
    /// SubjectAccessReview). Required when a policy uses either.
    pub kube_token: Option<String>,
    /// Envoy cluster of the kube-apiserver.
    pub kube_cluster: String,
    /// `:authority` of kube-apiserver calls.
    pub kube_authority: String,
    /// JWKS URL per JWT issuer (Authorino discovers it with OIDC; the plugin needs it given).
    pub jwks_urls: BTreeMap<String, String>,
    /// Where the plugin, host-shim and `.wasm` file-server images come from, by digest when
    /// the built images were read ([`crate::images`]).
    pub images: crate::images::ImageRefs,
    /// The platform the manifests are for (`render --platform`): decides the plugins' header
    /// hold mode and the routing ([`crate::platform`]). `None`: every form, plugins in hold
    /// mode (the library's historical output).
    pub platform: Option<crate::platform::Platform>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            gateway: None,
            endpoints: Vec::new(),
            kube_token: None,
            kube_cluster: "kube-apiserver".into(),
            kube_authority: "kubernetes.default.svc".into(),
            jwks_urls: BTreeMap::new(),
            images: crate::images::ImageRefs::default(),
            platform: None,
        }
    }
}
