//! TTFT p90 against offered load, one line per router, as a PNG (renderer pending).

use crate::bench::report::WorkloadReport;
use std::path::Path;

/// Writes the plot for `w` to `path`; returns whether a file was written.
///
/// # Errors
/// If the file cannot be written.
pub fn write_ttft_plot(_path: &Path, _w: &WorkloadReport) -> std::io::Result<bool> {
    Ok(false)
}
