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
    let (width, height) = (900i64, 560i64);
    let (left, right, top, bottom) = (90i64, 200i64, 50i64, 70i64);
    let mut c = Canvas::new(width as usize, height as usize, [255, 255, 255]);
    let black = [0, 0, 0];
    let grey = [220, 220, 220];
    let values: Vec<f64> = w
        .summaries
        .iter()
        .flat_map(|s| s.ttft_p90_by_stage.iter().copied())
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let lo = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(1e-3);
    let hi = values.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let (ylo, yhi) = (lo.log10().floor(), hi.log10().ceil());
    let xmax = w.stage_rates.iter().copied().fold(0.0, f64::max).max(1e-9);
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
    for r in &w.stage_rates {
        let x = px(*r);
        c.line((x, top + ph), (x, top + ph + 6), 1, black);
        c.text(x - 12, top + ph + 12, &format!("{r:.0}"), 2, black);
    }
    c.line((left, top), (left, top + ph), 2, black);
    c.line((left, top + ph), (left + pw, top + ph), 2, black);
    c.text(
        left,
        15,
        &format!("ttft p90 vs offered load: {}", w.workload),
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
    for (i, s) in w.summaries.iter().enumerate() {
        let col = COLORS[i % COLORS.len()];
        let pts: Vec<(i64, i64)> = w
            .stage_rates
            .iter()
            .zip(&s.ttft_p90_by_stage)
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
        c.text(left + pw + 44, ly, &s.router, 2, black);
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
