//! The vLLM simulator and the routing benchmark (being built).
