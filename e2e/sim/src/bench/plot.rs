//! TTFT p90 against offered load, one line per router, as a PNG: a log-scale y axis (seconds),
//! a linear x axis (requests/s), and a legend. Drawn with the crate's own [`png`] canvas.

use crate::bench::png::Canvas;
use crate::bench::report::WorkloadReport;
use std::path::Path;

const COLORS: [[u8; 3]; 6] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
];

/// Draws the TTFT p90 chart of `w`.
pub fn ttft_chart(w: &WorkloadReport) -> Canvas {
    let series: Vec<(&str, &[f64])> = w
        .summaries
        .iter()
        .map(|s| (s.router.as_str(), s.ttft_p90_by_stage.as_slice()))
        .collect();
    chart(&w.workload, &w.stage_rates, &series)
}

/// Draws TTFT p90 (seconds) against `rates` (requests/s), one line per named series.
pub fn chart(workload: &str, rates: &[f64], series: &[(&str, &[f64])]) -> Canvas {
    let (width, height) = (900i64, 560i64);
    let (left, right, top, bottom) = (90i64, 200i64, 50i64, 70i64);
    let mut c = Canvas::new(width as usize, height as usize, [255, 255, 255]);
    let black = [0, 0, 0];
    let grey = [220, 220, 220];
    let values: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(1e-3);
    let hi = values.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let (ylo, yhi) = (lo.log10().floor(), hi.log10().ceil());
    let xmax = rates.iter().copied().fold(0.0, f64::max).max(1e-9);
    let pw = width - left - right;
    let ph = height - top - bottom;
    let px = |x: f64| left + (x / xmax * pw as f64).round() as i64;
    let py = |y: f64| top + ph - ((y.log10() - ylo) / (yhi - ylo) * ph as f64).round() as i64;
    // Grid and y labels at powers of ten.
    let mut e = ylo;
    while e <= yhi {
        let y = py(10f64.powf(e));
        c.line((left, y), (left + pw, y), 1, grey);
        let label = if e >= 0.0 {
            format!("{:.0}s", 10f64.powf(e))
        } else {
            format!("{}s", 10f64.powf(e))
        };
        c.text(8, y - 5, &label, 2, black);
        e += 1.0;
    }
    for r in rates {
        let x = px(*r);
        c.line((x, top + ph), (x, top + ph + 6), 1, black);
        c.text(x - 12, top + ph + 12, &format!("{r:.0}"), 2, black);
    }
    c.line((left, top), (left, top + ph), 2, black);
    c.line((left, top + ph), (left + pw, top + ph), 2, black);
    c.text(
        left,
        15,
        &format!("ttft p90 vs offered load: {workload}"),
        3,
        black,
    );
    c.text(
        left + pw / 2 - 80,
        height - 25,
        "offered load (req/s)",
        2,
        black,
    );
    for (i, (name, values)) in series.iter().enumerate() {
        let col = COLORS[i % COLORS.len()];
        let pts: Vec<(i64, i64)> = rates
            .iter()
            .zip(values.iter())
            .filter(|(_, v)| v.is_finite() && **v > 0.0)
            .map(|(r, v)| (px(*r), py(*v)))
            .collect();
        for p in pts.windows(2) {
            c.line(p[0], p[1], 3, col);
        }
        for p in &pts {
            c.rect(p.0 - 4, p.1 - 4, 9, 9, col);
        }
        let ly = top + 20 + i as i64 * 28;
        c.rect(left + pw + 20, ly, 16, 10, col);
        c.text(left + pw + 44, ly, name, 2, black);
    }
    c
}

/// Writes the plot for `w` to `path`; returns whether a file was written (not when no stage
/// has data).
///
/// # Errors
/// If the file cannot be written.
pub fn write_ttft_plot(path: &Path, w: &WorkloadReport) -> std::io::Result<bool> {
    let any = w
        .summaries
        .iter()
        .any(|s| s.ttft_p90_by_stage.iter().any(|v| v.is_finite()));
    if !any {
        return Ok(false);
    }
    std::fs::write(path, ttft_chart(w).to_png())?;
    Ok(true)
}

/// One workload's "TTFT p90 (ms) by offered load" table read back from a markdown report.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTable {
    /// The `## workload` heading the table is under.
    pub workload: String,
    /// Offered load per stage, requests/s (the header's `N req/s` cells).
    pub rates: Vec<f64>,
    /// Router name and TTFT p90 per stage in seconds (NaN for a `–` cell).
    pub rows: Vec<(String, Vec<f64>)>,
}

/// Reads every "TTFT p90 (ms) by offered load" table of a markdown report (as
/// `bench-routing` and `tools/bench-routing-live/run.sh` write them), so reports combined
/// from several runs can be plotted.
pub fn stage_tables(md: &str) -> Vec<StageTable> {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let mut out: Vec<StageTable> = Vec::new();
    let mut workload = String::new();
    let mut current: Option<StageTable> = None;
    for line in md.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            workload = h.trim().to_string();
            continue;
        }
        if !line.starts_with('|') {
            if let Some(t) = current.take() {
                out.push(t);
            }
            continue;
        }
        let c = cells(line);
        if c.first().map(String::as_str) == Some("router")
            && c.len() > 1
            && c[1..].iter().all(|h| h.ends_with("req/s"))
        {
            let rates = c[1..]
                .iter()
                .map(|h| {
                    h.trim_end_matches("req/s")
                        .trim()
                        .parse()
                        .unwrap_or(f64::NAN)
                })
                .collect();
            current = Some(StageTable {
                workload: workload.clone(),
                rates,
                rows: Vec::new(),
            });
        } else if let Some(t) = current.as_mut() {
            if c.iter()
                .all(|x| x.starts_with("---") || x.starts_with(":--") || x.ends_with("--:"))
            {
                continue;
            }
            let values = c[1..]
                .iter()
                .map(|v| v.parse::<f64>().map(|ms| ms / 1000.0).unwrap_or(f64::NAN))
                .collect();
            t.rows.push((c[0].clone(), values));
        }
    }
    out.extend(current);
    out
}

/// Writes one `ttft-p90-<prefix><workload>.png` per stage table of `md` into `dir`; returns
/// the files written.
///
/// # Errors
/// If a file cannot be written.
pub fn plot_report(md: &str, dir: &Path, prefix: &str) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    for t in stage_tables(md) {
        if t.rows.is_empty() {
            continue;
        }
        let series: Vec<(&str, &[f64])> = t
            .rows
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let path = dir.join(format!("ttft-p90-{prefix}{}.png", t.workload));
        std::fs::write(&path, chart(&t.workload, &t.rates, &series).to_png())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MD: &str = "# report\n\n## shared-prefix\n\n| router | p50 |\n|---|---:|\n| a | 1 |\n\n\
TTFT p90 (ms) by offered load:\n\n| router | 2.8 req/s | 6.1 req/s |\n|---|---:|---:|\n\
| smg | 256 | 241 |\n| infergate | 250 | – |\n\n## zipf-hot\n\n\
| router | 2.8 req/s |\n|---|---:|\n| smg | 100 |\n";

    #[test]
    fn stage_tables_are_read_per_workload() {
        let t = stage_tables(MD);
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!(t[0].workload, "shared-prefix");
        assert_eq!(t[0].rates, vec![2.8, 6.1]);
        assert_eq!(t[0].rows[0], ("smg".to_string(), vec![0.256, 0.241]));
        assert_eq!(t[0].rows[1].1[0], 0.25);
        assert!(t[0].rows[1].1[1].is_nan());
        assert_eq!(t[1].workload, "zipf-hot");
        assert_eq!(t[1].rows.len(), 1);
        // The summary table (no req/s columns) is not a stage table.
        assert!(t.iter().all(|t| t.rows.iter().all(|(n, _)| n != "a")));
    }

    #[test]
    fn plot_report_writes_one_png_per_table() {
        let dir = std::env::temp_dir().join(format!("plot-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = plot_report(MD, &dir, "live-").unwrap();
        assert_eq!(files.len(), 2);
        let png = std::fs::read(dir.join("ttft-p90-live-shared-prefix.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
