//! `make images`' builder: the plugin images have the shape Istio and Envoy Gateway pull (last
//! layer `tar+gzip` holding `plugin.wasm`), building twice gives the same digests, the
//! host-shim-style images run as non-root with nothing but their binary, and damaged layouts
//! are refused naming the file.

use infergate_policies::images::{self, Inputs, Pins, PLUGINS};
use infergate_policies::oci::{self, Layout, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("infergate-images-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn wasm_dir() -> PathBuf {
    infergate_e2e::paths::plugin_wasm("auth")
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Stand-ins for the static binaries (the real ones come from the musl build in `make images`).
fn fake_bins(dir: &Path) -> (PathBuf, PathBuf) {
    let shim = dir.join("host-shim");
    let server = dir.join("infergate-wasm-server");
    std::fs::write(&shim, b"\x7fELF host-shim stand-in").unwrap();
    std::fs::write(&server, b"\x7fELF wasm-server stand-in").unwrap();
    (shim, server)
}

fn inputs(bins: &Path) -> Inputs {
    let (shim, server) = fake_bins(bins);
    Inputs {
        wasm_dir: wasm_dir(),
        host_shim: Some(shim),
        wasm_server: Some(server),
        version: "9.8.7".into(),
        source: "https://example.com/infergate".into(),
    }
}

#[test]
fn building_twice_gives_the_same_digests_and_bytes() {
    let bins = tmp("bins");
    let (a, b) = (tmp("a"), tmp("b"));
    let first = images::build(&inputs(&bins), &a).unwrap();
    let second = images::build(&inputs(&bins), &b).unwrap();
    assert_eq!(first, second);
    assert_eq!(first.len(), 5, "{first:?}");
    // Every file of the two layouts is byte-identical.
    for (name, _) in &first {
        let list = |root: &Path| {
            let mut v: Vec<(String, Vec<u8>)> = Vec::new();
            let mut stack = vec![root.join(name)];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        v.push((
                            p.strip_prefix(root).unwrap().display().to_string(),
                            std::fs::read(&p).unwrap(),
                        ));
                    }
                }
            }
            v.sort();
            v
        };
        assert_eq!(list(&a), list(&b), "{name}");
    }
    // A different input gives a different digest (the digest really covers the content).
    let mut other = inputs(&bins);
    other.version = "9.8.8".into();
    let c = tmp("c");
    let third = images::build(&other, &c).unwrap();
    assert_ne!(first[0].1, third[0].1);
}

#[test]
fn plugin_images_hold_plugin_wasm_in_a_last_tar_gzip_layer() {
    let bins = tmp("bins-shape");
    let out = tmp("shape");
    let built = images::build(&inputs(&bins), &out).unwrap();
    for p in PLUGINS {
        let name = images::plugin_image(p);
        let layout = Layout::read(&out.join(&name)).unwrap();
        assert_eq!(layout.tag, "9.8.7");
        assert_eq!(
            layout.digest,
            built.iter().find(|(n, _)| *n == name).unwrap().1
        );
        assert_eq!(layout.manifest["mediaType"], MANIFEST_MEDIA_TYPE);
        assert_eq!(layout.manifest["schemaVersion"], 2);
        let layers = layout.manifest["layers"].as_array().unwrap();
        assert_eq!(layers.last().unwrap()["mediaType"], LAYER_MEDIA_TYPE);
        let wasm = layout.last_layer_file("plugin.wasm").unwrap();
        let built_wasm = std::fs::read(wasm_dir().join(images::plugin_wasm_file(p))).unwrap();
        assert!(
            wasm == built_wasm,
            "{p}: plugin.wasm differs from the build"
        );
        assert_eq!(&wasm[..4], b"\0asm");
        // The config names the layer's uncompressed tar and carries version and source.
        let gz = layout.blob(layers[0]["digest"].as_str().unwrap()).unwrap();
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut tar).unwrap();
        assert_eq!(layout.config["rootfs"]["diff_ids"][0], oci::digest(&tar));
        let labels = &layout.config["config"]["Labels"];
        assert_eq!(labels["org.opencontainers.image.version"], "9.8.7");
        assert_eq!(
            labels["org.opencontainers.image.source"],
            "https://example.com/infergate"
        );
        assert_eq!(layout.manifest["annotations"], *labels);
    }
    let pins = Pins::read(&out).unwrap();
    assert_eq!(pins.version, "9.8.7");
    assert_eq!(pins.images.len(), 5);
    let auth = &pins.images["infergate-auth"];
    let wasm = std::fs::read(wasm_dir().join("infergate_auth.wasm")).unwrap();
    assert_eq!(
        auth.wasm_sha256.as_deref().unwrap(),
        oci::digest(&wasm).trim_start_matches("sha256:")
    );
}

#[test]
fn linux_images_run_as_non_root_with_only_their_files() {
    let bins = tmp("bins-linux");
    let out = tmp("linux");
    images::build(&inputs(&bins), &out).unwrap();
    let shim = Layout::read(&out.join(images::HOST_SHIM)).unwrap();
    let cfg = &shim.config;
    assert_eq!(cfg["os"], "linux");
    assert_eq!(cfg["architecture"], "amd64");
    assert_eq!(cfg["config"]["User"], images::NON_ROOT);
    assert!(!images::NON_ROOT.starts_with("0:"));
    assert_eq!(cfg["config"]["Entrypoint"][0], "/host-shim");
    assert!(cfg["config"]["ExposedPorts"]["9002/tcp"].is_object());
    assert_eq!(
        cfg["config"]["Labels"]["org.opencontainers.image.version"],
        "9.8.7"
    );
    let layer = shim
        .blob(shim.manifest["layers"][0]["digest"].as_str().unwrap())
        .unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&layer[..]));
    let entries: Vec<(String, u32, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(h.mtime().unwrap(), 0);
            assert_eq!(h.uid().unwrap(), 0);
            (
                e.path().unwrap().display().to_string(),
                h.mode().unwrap(),
                h.mtime().unwrap(),
            )
        })
        .collect();
    // No shell, no libc, no user database: the binary alone, executable.
    assert_eq!(entries, vec![("host-shim".to_string(), 0o755, 0)]);
    // The file server's image: its binary and the three plugins under /wasm.
    let files = Layout::read(&out.join(images::WASM_FILES)).unwrap();
    for p in PLUGINS {
        let name = format!("wasm/infergate-{p}.wasm");
        let w = files.last_layer_file(&name).unwrap();
        assert!(w == std::fs::read(wasm_dir().join(images::plugin_wasm_file(p))).unwrap());
    }
    assert_eq!(
        files.config["config"]["Entrypoint"][0],
        "/infergate-wasm-server"
    );
}

#[test]
fn damaged_layouts_are_refused_naming_the_file() {
    let bins = tmp("bins-bad");
    let out = tmp("bad");
    images::build(&inputs(&bins), &out).unwrap();
    // A blob whose content no longer matches its digest.
    let auth = out.join("infergate-auth");
    let layout = Layout::read(&auth).unwrap();
    let layer = layout.manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = auth
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let err = Pins::read(&out).unwrap_err().to_string();
    assert!(err.contains("does not match its digest"), "{err}");
    assert!(err.contains(layer.trim_start_matches("sha256:")), "{err}");
    // Images of different tags are not mixed.
    images::build(&inputs(&bins), &out).unwrap();
    let mut other = inputs(&bins);
    other.version = "1.0.0".into();
    let elsewhere = tmp("bad-other");
    images::build(&other, &elsewhere).unwrap();
    std::fs::remove_dir_all(out.join("infergate-affinity")).unwrap();
    std::fs::rename(
        elsewhere.join("infergate-affinity"),
        out.join("infergate-affinity"),
    )
    .unwrap();
    let err = Pins::read(&out).unwrap_err().to_string();
    assert!(
        err.contains("infergate-affinity") && err.contains("1.0.0"),
        "{err}"
    );
    // A missing plugin image, a hostile digest and a non-JSON index.
    std::fs::remove_dir_all(out.join("infergate-affinity")).unwrap();
    let err = Pins::read(&out).unwrap_err().to_string();
    assert!(err.contains("infergate-affinity/index.json"), "{err}");
    let err = layout
        .blob("sha256:../../etc/passwd")
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected sha256:<64 hex>"), "{err}");
    std::fs::write(auth.join("index.json"), b"not json").unwrap();
    let err = Layout::read(&auth).unwrap_err().to_string();
    assert!(err.contains("index.json"), "{err}");
    // A layer without plugin.wasm.
    let l = oci::layer(&[oci::File {
        path: "other.wasm".into(),
        mode: 0o644,
        data: vec![1],
    }])
    .unwrap();
    let err = oci::layer_file(&l.gz, "plugin.wasm")
        .unwrap_err()
        .to_string();
    assert!(err.contains("plugin.wasm not found"), "{err}");
}

#[test]
fn the_clis_name_the_bad_input() {
    let run = |bin: &str, args: &[&str]| {
        let o = std::process::Command::new(bin)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // The builder: a folder without the plugins.
    let empty = tmp("cli-empty");
    let err = run(
        env!("CARGO_BIN_EXE_infergate-images"),
        &[
            "--wasm-dir",
            empty.to_str().unwrap(),
            "--out",
            tmp("cli-out").to_str().unwrap(),
        ],
    );
    assert!(err.contains("infergate_auth.wasm"), "{err}");
    // render --images: a folder that holds no layouts, and a version the layouts do not carry.
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/api-key-tiers");
    let render = |extra: &[&str]| {
        let mut args = vec![
            "render",
            "--in",
            examples.to_str().unwrap(),
            "--out",
            "/nonexistent-out",
            "--endpoints",
            "10.0.0.7:8000",
        ];
        args.extend_from_slice(extra);
        run(env!("CARGO_BIN_EXE_infergate-policies"), &args)
    };
    let err = render(&["--images", empty.to_str().unwrap()]);
    assert!(
        err.contains("--images") && err.contains("infergate-auth/index.json"),
        "{err}"
    );
    let bins = tmp("bins-cli");
    let built = tmp("cli-built");
    images::build(&inputs(&bins), &built).unwrap();
    let err = render(&["--images", built.to_str().unwrap(), "--version", "1.2.3"]);
    assert!(
        err.contains("--version 1.2.3") && err.contains("9.8.7"),
        "{err}"
    );
}
