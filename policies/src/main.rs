//! `infergate-policies`: renders Kuadrant / llm-d / GIE resources into infergate's plugin
//! configuration and manifests.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use infergate_policies::resources::Bundle;
use infergate_policies::{render, Options};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Render plugin configs, Istio / Envoy Gateway manifests, host-shim and a demo config.
    Render {
        #[command(flatten)]
        input: Translation,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        images: ImageFlags,
    },
    /// Check the input translates, print the plugin configurations, write nothing.
    Check {
        #[command(flatten)]
        input: Translation,
    },
}

/// Which images the manifests name.
#[derive(Args, Debug)]
struct ImageFlags {
    /// Registry and prefix the images were pushed to (`make push REGISTRY=…`).
    #[arg(long, default_value = "ghcr.io/infergate")]
    registry: String,
    /// Image tag (default: the tag of the layouts read with --images, else this version).
    #[arg(long)]
    version: Option<String>,
    /// Folder of the built OCI layouts (`make images` writes `target/images`): every image is
    /// then named by digest, with the sha256 values Istio, Envoy Gateway and Envoy check.
    #[arg(long)]
    images: Option<PathBuf>,
    /// host-shim image, used as given (overrides --registry for host-shim).
    #[arg(long)]
    host_shim_image: Option<String>,
}

impl ImageFlags {
    fn refs(self) -> Result<infergate_policies::images::ImageRefs> {
        let pins = match &self.images {
            Some(dir) => Some(
                infergate_policies::images::Pins::read(dir)
                    .with_context(|| format!("--images {}", dir.display()))?,
            ),
            None => None,
        };
        if let (Some(v), Some(p)) = (&self.version, &pins) {
            if *v != p.version {
                bail!(
                    "--version {v}: the images in --images are tagged {}",
                    p.version
                );
            }
        }
        let default = infergate_policies::images::ImageRefs::default();
        Ok(infergate_policies::images::ImageRefs {
            registry: self.registry.trim_end_matches('/').to_string(),
            version: self
                .version
                .or_else(|| pins.as_ref().map(|p| p.version.clone()))
                .unwrap_or(default.version),
            pins,
            host_shim: self.host_shim_image,
        })
    }
}

/// What both commands translate, and how.
#[derive(Args, Debug)]
struct Translation {
    /// Input YAML files or folders (multi-document; folders are read recursively).
    #[arg(long = "in", required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// Gateway to render (`name` or `namespace/name`); needed when the input has several.
    #[arg(long)]
    gateway: Option<String>,
    /// Pods' addresses (`ip:port`, comma separated): the affinity fallback and host-shim's list.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// File with the service-account token the gateway presents to the kube-apiserver
    /// (TokenReview / SubjectAccessReview).
    #[arg(long)]
    kube_token_file: Option<PathBuf>,
    /// JWKS URL of a JWT issuer (`ISSUER=URL`, repeatable).
    #[arg(long = "jwks-url")]
    jwks_urls: Vec<String>,
    /// Gateway platform: istio-1.26 (= openshift-4.19 / openshift-4.20, the guide's),
    /// istio-1.27, istio-1.28+, envoy-gateway-1.4, envoy-gateway-1.5+. Decides whether the
    /// plugins may hold headers and whether routing is the affinity plugin or host-shim's
    /// ext_proc (see PLATFORM.md in the output).
    #[arg(long, default_value = "istio-1.26")]
    platform: infergate_policies::platform::Platform,
}

impl Translation {
    /// The loaded resources and the translation options the flags describe.
    fn load(self) -> Result<(Bundle, Options)> {
        let mut o = Options {
            gateway: self.gateway,
            endpoints: self.endpoints,
            platform: Some(self.platform),
            ..Options::default()
        };
        if let Some(f) = self.kube_token_file {
            let t =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            o.kube_token = Some(t.trim().to_string());
        }
        let mut map = BTreeMap::new();
        for j in self.jwks_urls {
            let Some((issuer, url)) = j.split_once('=') else {
                bail!("--jwks-url `{j}`: expected ISSUER=URL");
            };
            map.insert(issuer.to_string(), url.to_string());
        }
        o.jwks_urls = map;
        Ok((Bundle::load(&self.inputs)?, o))
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Render { input, out, images } => {
            let (bundle, mut o) = input.load()?;
            o.images = images.refs()?;
            let r = render(&bundle, &o)?;
            infergate_policies::render::write(&r, &out)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("Gateway {}/{}:", r.gateway.0, r.gateway.1);
            for f in r.files.keys() {
                println!("  {}", out.join(f).display());
            }
        }
        Command::Check { input } => {
            let (bundle, o) = input.load()?;
            let r = render(&bundle, &o)?;
            for (name, cfg) in &r.plugins {
                println!("{name}: {cfg}");
            }
        }
    }
    Ok(())
}
