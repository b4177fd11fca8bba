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
    /// OCI or HTTPS base the `.wasm` images are pulled from (`<base>/infergate-<plugin>:<tag>`).
    pub wasm_image_base: String,
    /// host-shim container image.
    pub host_shim_image: String,
    /// Image tag of the plugins.
    pub tag: String,
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
            wasm_image_base: "oci://ghcr.io/infergate".into(),
            host_shim_image: format!("ghcr.io/infergate/host-shim:{}", env!("CARGO_PKG_VERSION")),
            tag: env!("CARGO_PKG_VERSION").into(),
        }
    }
}
