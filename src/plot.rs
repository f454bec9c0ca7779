//! Training curves of one or more runs, drawn like Figure 6 of He et al. (2015): training error as a thin
//! dashed line and test error as a bold line against iterations, one colour per run.
//!
//! The input is each run folder's `metrics.jsonl` (see `train::progress`): training intervals carry
//! `train_err`, evaluations carry `test_err`, both fractions in 0..1 keyed by `iter`. The output is a PNG.
//!
//! Text is rendered with a bundled copy of DejaVu Sans (`assets/fonts/`), so plotting needs no system
//! fonts, fontconfig or freetype.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{invalid, io_error, Error, Result};

/// The name of the metrics file in a run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// The image size `plot_runs` draws, in pixels (width, height).
pub const DEFAULT_SIZE: (u32, u32) = (1000, 620);

/// The colours given to the runs, in order (repeating after the last): Tableau 10, which stays
/// distinguishable for most colour-blind readers and on paper.
pub const RUN_COLOURS: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// The colour of the `index`-th run (0-based) as (red, green, blue).
pub fn run_colour(index: usize) -> (u8, u8, u8) {
    RUN_COLOURS[index % RUN_COLOURS.len()]
}

const FONT_FAMILY: &str = "sans-serif";
const FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// How to draw the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotOptions {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// The top of the error axis in percent; `None` fits it to the highest error plotted (at most 100).
    /// A low value (the paper uses 20) zooms in on the end of training; curves leave through the top.
    pub y_max_percent: Option<f64>,
}

impl Default for PlotOptions {
    fn default() -> Self {
        PlotOptions {
            width: DEFAULT_SIZE.0,
            height: DEFAULT_SIZE.1,
            y_max_percent: None,
        }
    }
}

/// The error curves of one run, as (iteration, error as a fraction) sorted by iteration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curves {
    pub train: Vec<(u64, f64)>,
    pub test: Vec<(u64, f64)>,
}

impl Curves {
    pub fn is_empty(&self) -> bool {
        self.train.is_empty() && self.test.is_empty()
    }

    fn max_iter(&self) -> u64 {
        let last = |c: &[(u64, f64)]| c.last().map_or(0, |p| p.0);
        last(&self.train).max(last(&self.test))
    }

    fn max_err(&self) -> f64 {
        self.train
            .iter()
            .chain(&self.test)
            .map(|p| p.1)
            .fold(0.0, f64::max)
    }
}

/// One curve being read: the value last written for each iteration. When a curve's iteration goes back
/// (a run resumed from an earlier checkpoint), the points after it belong to the abandoned trajectory and
/// are dropped, so only the latest trajectory is drawn.
#[derive(Default)]
struct CurveBuilder {
    points: BTreeMap<u64, f64>,
    last_iter: Option<u64>,
}

impl CurveBuilder {
    fn push(&mut self, iter: u64, value: f64) {
        if self.last_iter.is_some_and(|last| iter < last) {
            // iter < last <= u64::MAX, so iter + 1 does not overflow.
            self.points.split_off(&(iter + 1));
        }
        self.points.insert(iter, value);
        self.last_iter = Some(iter);
    }

    fn finish(self) -> Vec<(u64, f64)> {
        self.points.into_iter().collect()
    }
}

/// Reads the training and test error curves from a `metrics.jsonl` file. Blank lines, fields other than
/// `iter`, `train_err` and `test_err`, and errors written as `null` (a NaN) are skipped; a line that is not
/// a JSON object with a non-negative integer `iter`, or whose error is not a number in 0..1, is an
/// [`Error::Data`] naming the file and line.
pub fn read_metrics(path: &Path) -> Result<Curves> {
    let file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut train = CurveBuilder::default();
    let mut test = CurveBuilder::default();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_error(path))?;
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| Error::Data {
            path: path.to_path_buf(),
            message: format!("line {line_no}: {message}"),
        };
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad(json_syntax_message(&e)))?;
        let object = value
            .as_object()
            .ok_or_else(|| bad("expected a JSON object".to_string()))?;
        let iter = match object.get("iter") {
            None => return Err(bad("no `iter` field".to_string())),
            Some(v) => v
                .as_u64()
                .ok_or_else(|| bad(format!("`iter` is {v}, not a non-negative integer")))?,
        };
        for (key, curve) in [("train_err", &mut train), ("test_err", &mut test)] {
            match object.get(key) {
                None | Some(serde_json::Value::Null) => {}
                Some(v) => match v.as_f64() {
                    Some(err) if (0.0..=1.0).contains(&err) => curve.push(iter, err),
                    _ => {
                        return Err(bad(format!(
                            "`{key}` is {v}, not an error fraction in 0..1"
                        )))
                    }
                },
            }
        }
    }
    Ok(Curves {
        train: train.finish(),
        test: test.finish(),
    })
}

/// serde_json's message without its " at line 1 column N" suffix (the line is ours), column kept.
fn json_syntax_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(message) => format!("invalid JSON at column {}: {message}", e.column()),
        None => format!("invalid JSON: {text}"),
    }
}

/// The name a run is shown under: its folder's name.
fn run_name(dir: &Path) -> String {
    let name = dir.file_name().map(PathBuf::from).or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(PathBuf::from))
    });
    match name {
        Some(name) => name.to_string_lossy().into_owned(),
        None => dir.display().to_string(),
    }
}

/// Reads each run folder's metrics, returning (name, curves) per run. Runs that would share a legend
/// name are shown under their whole path instead.
fn read_runs(run_dirs: &[PathBuf]) -> Result<Vec<(String, Curves)>> {
    if run_dirs.is_empty() {
        return Err(Error::Config("plot: no run folders given".to_string()));
    }
    let mut runs = Vec::with_capacity(run_dirs.len());
    for dir in run_dirs {
        let meta = std::fs::metadata(dir).map_err(io_error(dir))?;
        if !meta.is_dir() {
            return Err(Error::Config(format!(
                "plot: {} is not a run folder (expected a folder holding {METRICS_FILE})",
                dir.display()
            )));
        }
        let path = dir.join(METRICS_FILE);
        let curves = read_metrics(&path)?;
        if curves.is_empty() {
            return Err(Error::Config(format!(
                "plot: run {} has no metrics yet ({} holds no train_err or test_err)",
                dir.display(),
                path.display()
            )));
        }
        runs.push((run_name(dir), curves));
    }
    let names: Vec<String> = runs.iter().map(|r| r.0.clone()).collect();
    for ((name, _), dir) in runs.iter_mut().zip(run_dirs) {
        if names.iter().filter(|n| *n == name).count() > 1 {
            *name = dir.display().to_string();
        }
    }
    Ok(runs)
}

/// Plots the training (thin dashed) and test (bold) error of each run folder against iterations into a
/// PNG at `out`, with [`PlotOptions::default`].
pub fn plot_runs(run_dirs: &[PathBuf], out: &Path) -> Result<()> {
    plot_runs_with(run_dirs, out, &PlotOptions::default())
}

/// [`plot_runs`] with a chosen size and error axis.
pub fn plot_runs_with(run_dirs: &[PathBuf], out: &Path, options: &PlotOptions) -> Result<()> {
    let (width, height) = (options.width, options.height);
    if width < 200 || height < 150 || width > 16384 || height > 16384 {
        return Err(Error::Config(format!(
            "plot: image size {width}x{height} is out of range (200x150 to 16384x16384)"
        )));
    }
    if let Some(y_max) = options.y_max_percent {
        if !(y_max > 0.0 && y_max <= 100.0) {
            return Err(Error::Config(format!(
                "plot: the error axis top {y_max}% is not in (0, 100]"
            )));
        }
    }
    let runs = read_runs(run_dirs)?;
    register_bundled_font()?;

    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        draw(&root, &runs, options).map_err(|e| invalid("plot", format!("drawing failed: {e}")))?;
        root.present()
            .map_err(|e| invalid("plot", format!("drawing failed: {e}")))?;
    }
    let png = encode_png(&pixels, width, height)?;
    std::fs::write(out, png).map_err(io_error(out))
}

fn register_bundled_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "plot",
            "the bundled font DejaVuSans.ttf cannot be read",
        ))
    }
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    let failed = |e: png::EncodingError| invalid("plot", format!("PNG encoding failed: {e}"));
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(failed)?;
    writer.write_image_data(rgb).map_err(failed)?;
    writer.finish().map_err(failed)?;
    Ok(bytes)
}

/// A round top for the error axis, in percent: a little above `max`, at most 100.
fn nice_top(max: f64) -> f64 {
    let raw = (max * 1.04).max(1.0);
    let unit = 10f64.powf(raw.log10().floor()) / 2.0;
    ((raw / unit).ceil() * unit).min(100.0)
}

/// Tick label for an iteration count: plain below 10k, else "10k", "12.5k", ...
fn iter_label(x: f64) -> String {
    let x = x.round();
    if x.abs() >= 10_000.0 {
        let k = x / 1000.0;
        if k.fract() == 0.0 {
            format!("{k:.0}k")
        } else {
            format!("{k:.1}k")
        }
    } else {
        format!("{x:.0}")
    }
}

fn percent_label(y: f64) -> String {
    if (y - y.round()).abs() < 1e-9 {
        format!("{y:.0}")
    } else {
        format!("{y:.1}")
    }
}

fn to_percent(curve: &[(u64, f64)]) -> Vec<(f64, f64)> {
    curve.iter().map(|&(i, e)| (i as f64, 100.0 * e)).collect()
}

/// Splits a polyline into the pieces that lie at or below `top`, cutting each crossing of `top` where it
/// happens. (Plotters would instead squash the points above onto the top edge.) A piece of one point is
/// an isolated point in view.
fn clip_to_top(points: &[(f64, f64)], top: f64) -> Vec<Vec<(f64, f64)>> {
    let crossing =
        |(x0, y0): (f64, f64), (x1, y1): (f64, f64)| (x0 + (x1 - x0) * (top - y0) / (y1 - y0), top);
    let mut pieces = Vec::new();
    let mut piece: Vec<(f64, f64)> = Vec::new();
    let mut prev: Option<(f64, f64)> = None;
    for &p in points {
        let inside = p.1 <= top;
        match prev {
            Some(q) if (q.1 <= top) != inside => {
                let c = crossing(q, p);
                if inside {
                    piece.push(c);
                    piece.push(p);
                } else {
                    piece.push(c);
                    pieces.push(std::mem::take(&mut piece));
                }
            }
            _ if inside => piece.push(p),
            _ => {}
        }
        prev = Some(p);
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

/// The place for the legend, a box of `size` pixels in a plotting area of `area` pixels, that hides
/// the fewest curve points (sampled along the lines); on a tie the earlier of upper right, lower left,
/// upper middle, middle right, lower right, upper left.
fn legend_position(
    runs: &[(String, Curves)],
    y_max: f64,
    size: (i32, i32),
    area: (u32, u32),
    to_pixel: impl Fn((f64, f64)) -> (i32, i32),
) -> SeriesLabelPosition {
    use SeriesLabelPosition::*;
    let mut samples = Vec::new();
    for (_, curves) in runs {
        for curve in [&curves.train, &curves.test] {
            for piece in clip_to_top(&to_percent(curve), y_max) {
                samples.push(to_pixel(piece[0]));
                for pair in piece.windows(2) {
                    let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
                    for k in 1..=4 {
                        let t = f64::from(k) / 4.0;
                        samples.push(to_pixel((x0 + t * (x1 - x0), y0 + t * (y1 - y0))));
                    }
                }
            }
        }
    }
    let (w, h) = size;
    let (area_w, area_h) = (area.0 as i32, area.1 as i32);
    // The same layout as plotters' (5 px from the edges), with a few pixels of slack around the box.
    let hidden = |position: &SeriesLabelPosition| {
        let x = match position {
            UpperLeft | LowerLeft => 5,
            UpperMiddle => (area_w - w) / 2,
            _ => area_w - w - 5,
        };
        let y = match position {
            UpperLeft | UpperMiddle | UpperRight => 5,
            MiddleRight => (area_h - h) / 2,
            _ => area_h - h - 5,
        };
        let slack = 4;
        samples
            .iter()
            .filter(|&&(px, py)| {
                px >= x - slack && px <= x + w + slack && py >= y - slack && py <= y + h + slack
            })
            .count()
    };
    [
        UpperRight,
        LowerLeft,
        UpperMiddle,
        MiddleRight,
        LowerRight,
        UpperLeft,
    ]
    .into_iter()
    .min_by_key(hidden)
    .unwrap_or(UpperRight)
}

type DrawResult<T> = std::result::Result<
    T,
    DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>,
>;

fn draw(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    runs: &[(String, Curves)],
    options: &PlotOptions,
) -> DrawResult<()> {
    root.fill(&WHITE)?;
    // Text, lines and margins scale with the image (16 px text at the default size), but text stays
    // readable (at least 12 px) in small images.
    let scale = (f64::from(options.width) / f64::from(DEFAULT_SIZE.0))
        .min(f64::from(options.height) / f64::from(DEFAULT_SIZE.1))
        .max(0.75);
    let px = |v: f64| ((v * scale).round() as u32).max(1);

    let x_max = runs
        .iter()
        .map(|r| r.1.max_iter())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let y_max = options.y_max_percent.unwrap_or_else(|| {
        nice_top(100.0 * runs.iter().map(|r| r.1.max_err()).fold(0.0, f64::max))
    });

    let label_font = (FONT_FAMILY, px(16.0)).into_font();
    let desc_font = (FONT_FAMILY, px(19.0)).into_font();
    let mut chart = ChartBuilder::on(root)
        .margin_top(px(18.0))
        .margin_right(px(28.0))
        .margin_left(px(12.0))
        .margin_bottom(px(10.0))
        .x_label_area_size(px(52.0))
        .y_label_area_size(px(66.0))
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("iter.")
        .y_desc("error (%)")
        .x_label_formatter(&|x| iter_label(*x))
        .y_label_formatter(&|y| percent_label(*y))
        .x_labels(8)
        .y_labels(10)
        .label_style(label_font.clone())
        .axis_desc_style(desc_font)
        .max_light_lines(1)
        .bold_line_style(RGBColor(222, 222, 222))
        .light_line_style(RGBColor(242, 242, 242))
        .axis_style(BLACK)
        .draw()?;

    let thin = px(1.0);
    let bold = px(3.0);
    let dash = px(7.0);
    let gap = px(4.0);
    let legend_len = px(24.0) as i32;
    // Training curves first so the test curves lie on top of them; the later runs' on top of the earlier.
    for (index, (_, curves)) in runs.iter().enumerate() {
        let (r, g, b) = run_colour(index);
        let style = RGBColor(r, g, b).stroke_width(thin);
        for piece in clip_to_top(&to_percent(&curves.train), y_max) {
            if piece.len() == 1 {
                chart.draw_series(
                    piece
                        .iter()
                        .map(|&p| Circle::new(p, px(3.0), RGBColor(r, g, b).filled())),
                )?;
            } else {
                chart.draw_series(DashedLineSeries::new(piece, dash, gap, style))?;
            }
        }
    }
    for (index, (name, curves)) in runs.iter().enumerate() {
        let (r, g, b) = run_colour(index);
        let colour = RGBColor(r, g, b);
        let style = colour.stroke_width(bold);
        for piece in clip_to_top(&to_percent(&curves.test), y_max) {
            if piece.len() == 1 {
                chart.draw_series(
                    piece
                        .iter()
                        .map(|&p| Circle::new(p, px(4.0), colour.filled())),
                )?;
            } else {
                chart.draw_series(LineSeries::new(piece, style))?;
            }
        }
        // The legend entry hangs on an empty series, so a run is listed even when none of it is in view.
        chart
            .draw_series(LineSeries::new(std::iter::empty::<(f64, f64)>(), style))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + legend_len, y)], style));
    }
    // Two black legend entries explain the line styles.
    let black_thin = BLACK.stroke_width(thin);
    let black_bold = BLACK.stroke_width(bold);
    chart
        .draw_series(LineSeries::new(
            std::iter::empty::<(f64, f64)>(),
            black_bold,
        ))?
        .label("test error")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + legend_len, y)], black_bold));
    // Three dashes across the legend glyph.
    let g = gap as i32;
    let d = ((legend_len - 2 * g) / 3).max(1);
    chart
        .draw_series(LineSeries::new(
            std::iter::empty::<(f64, f64)>(),
            black_thin,
        ))?
        .label("training error")
        .legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (d, 0)], black_thin)
                + PathElement::new(vec![(d + g, 0), (2 * d + g, 0)], black_thin)
                + PathElement::new(vec![(2 * (d + g), 0), (legend_len, 0)], black_thin)
        });
    let (legend_margin, legend_glyph) = (px(12.0), px(34.0));
    let mut legend_text = MultiLineText::<_, &str>::new((0, 0), label_font.clone());
    for line in runs
        .iter()
        .map(|r| r.0.as_str())
        .chain(["test error", "training error"])
    {
        legend_text.push_line(line);
    }
    let legend_size = legend_text.estimate_dimension().map_or((0, 0), |(w, h)| {
        (
            w + (legend_glyph + 2 * legend_margin) as i32,
            h + 2 * legend_margin as i32,
        )
    });
    let area = chart.plotting_area();
    let (base_x, base_y) = area.get_base_pixel();
    let to_pixel = |p: (f64, f64)| {
        let (x, y) = chart.backend_coord(&p);
        (x - base_x, y - base_y)
    };
    let position = legend_position(runs, y_max, legend_size, area.dim_in_pixel(), to_pixel);
    chart
        .configure_series_labels()
        .position(position)
        .margin(legend_margin)
        .legend_area_size(legend_glyph)
        .label_font(label_font)
        .background_style(WHITE.mix(0.92))
        .border_style(RGBColor(160, 160, 160))
        .draw()?;
    Ok(())
}
