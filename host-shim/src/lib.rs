//! host-shim: the infergate sidecar.
//!
//! It keeps the load view of every model-server endpoint (by scraping their `/metrics`),
//! an approximate index of which endpoint holds which prompt prefixes, and answers endpoint
//! picks two ways: a compact HTTP pick API for the infergate affinity Wasm plugin, and the
//! Endpoint Picker Protocol over Envoy ext_proc, so it can serve as an InferencePool's EPP.
//!
//! | module | job |
//! |---|---|
//! | [`scheduler`] | the pick itself: filters → scorers → picker, configured by `EndpointPickerConfig`; a library without clock or runtime |
//! | [`index`] | per-endpoint prefix LRU sized from the pod's KV capacity, and the dispatch ledger |
//! | [`endpoint`] | what is known about one endpoint at pick time |
//! | [`flow_control`] | the bounded wait queue for picks when every endpoint is saturated |
//! | [`metrics_text`] | vLLM / SGLang figures out of Prometheus text |
//! | [`source`] | where the endpoint list comes from (static list, watched file) |
//! | [`scrape`] | one scraping task per endpoint |
//! | [`peers`] | sharing served reports with peer replicas so their indexes agree |
//! | [`runtime`] | the live wiring: sources, scrapers, scheduler, clock |
//! | [`server`] | HTTP pick API + `/metrics` + `/debug/state`, ext_proc EPP, gRPC health |
//! | [`telemetry`] | Prometheus metrics of host-shim itself |

#![deny(missing_docs)]

pub mod clock;
pub mod endpoint;
pub mod flow_control;
pub mod index;
pub mod metrics_text;
pub mod peers;
pub mod runtime;
pub mod scheduler;
pub mod scrape;
pub mod server;
pub mod source;
pub mod telemetry;
