//! The libFuzzer driver: `FUZZ_TARGET=<name> infergate-fuzz <corpus dirs> [libFuzzer flags]`.
//! Built by `make fuzz` with coverage instrumentation (see `tests/fuzz/run.sh`).

#![no_main]

use std::sync::OnceLock;

static RUN: OnceLock<fn(&[u8])> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let run = RUN.get_or_init(|| {
        let name = std::env::var("FUZZ_TARGET").unwrap_or_default();
        match infergate_fuzz::target(&name) {
            Some(t) => t.run,
            None => {
                let names: Vec<_> = infergate_fuzz::targets().iter().map(|t| t.name).collect();
                eprintln!("set FUZZ_TARGET to one of {names:?}");
                std::process::exit(2)
            }
        }
    });
    run(data);
});
