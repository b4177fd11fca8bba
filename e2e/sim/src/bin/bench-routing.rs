//! `bench-routing`: compares routers on simulated vLLM engines in virtual time and writes a
//! markdown report (and a PNG of TTFT p90 against offered load per workload).

fn main() -> anyhow::Result<()> {
    infergate_sim::bench::cli::main_with(Vec::new())
}
