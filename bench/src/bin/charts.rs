//! Charts of the end-to-end benchmarks: PNG files drawn from the raw CSVs that the scripts write.
//!
//! Usage: charts [--echo PATH] [--fanout PATH] [--idle PATH] [--out DIR] [--font PATH]
//!               [--other-max CORES]
//!
//! Inputs (defaults relative to the current directory, the repository root for
//! scripts/charts.sh):
//! * `--echo` target/bench-echo/results.csv (scripts/bench-echo.sh) → echo-throughput.png
//!   (msgs/s) and echo-cpu.png (msgs per server CPU-second), each scenario normalised to its
//!   fastest peer = 1.0;
//! * `--idle` target/bench-idle/results.csv (scripts/bench-idle.sh) → idle-memory.png (KiB of
//!   server RSS per idle connection);
//! * `--fanout` target/bench-fanout/results.csv (scripts/bench-fanout.sh) → fanout.png
//!   (deliveries/s and p99 latency).
//!
//! Every bar is the median over the rounds, its whisker the min–max. As in the scripts' summaries,
//! failed measurements are left out, and so are those during which other work took more than
//! `--other-max` cores (default: $OTHER_MAX, else 0.15) unless all of a bar's rounds were
//! contended (its label is then marked with `*`). A missing CSV skips its charts with a note on
//! stderr. The written files are printed on stdout, one per line.
//!
//! Text is drawn with plotters' pure-Rust `ab_glyph` renderer from a TrueType file, by default
//! DejaVu Sans of Debian's `fonts-dejavu-core` (`--font` for another file).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

type Res<T> = Result<T, Box<dyn Error>>;

const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT: &str = "sans-serif";

/// The echo scenarios charted, in this order (the permessage-deflate ones run against the tidings
/// servers only: no peer to normalise to).
const ECHO_SCENARIOS: [&str; 5] = [
    "rr-20B-text",
    "pipe-16B-bin",
    "pipe-1KiB-text",
    "64KiB-bin",
    "1MiB-bin",
];
/// The peers of scripts/bench-echo.sh: the fastest of them is 1.0.
const ECHO_PEERS: [&str; 5] = [
    "tokio-tungstenite",
    "tokio-websockets",
    "fastwebsockets",
    "async-tungstenite-smol",
    "async-tungstenite-smol/local",
];

struct Args {
    echo: PathBuf,
    fanout: PathBuf,
    idle: PathBuf,
    out: PathBuf,
    font: PathBuf,
    other_max: f64,
}

const USAGE: &str = "usage: charts [--echo PATH] [--fanout PATH] [--idle PATH] [--out DIR] \
                     [--font PATH] [--other-max CORES]";

fn parse_args() -> Result<Args, String> {
    let other_max = match std::env::var("OTHER_MAX") {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("OTHER_MAX={v}: not a number"))?,
        Err(_) => 0.15,
    };
    let mut args = Args {
        echo: "target/bench-echo/results.csv".into(),
        fanout: "target/bench-fanout/results.csv".into(),
        idle: "target/bench-idle/results.csv".into(),
        out: "docs/bench".into(),
        font: DEFAULT_FONT.into(),
        other_max,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--echo" => args.echo = value.into(),
            "--fanout" => args.fanout = value.into(),
            "--idle" => args.idle = value.into(),
            "--out" => args.out = value.into(),
            "--font" => args.font = value.into(),
            "--other-max" => {
                args.other_max = value
                    .parse()
                    .map_err(|_| format!("--other-max {value}: not a number"))?
            }
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("charts: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = register_fonts(&args.font) {
        eprintln!("charts: {e}");
        return ExitCode::FAILURE;
    }
    let mut written = 0;
    let mut failed = false;
    type Job = fn(&Args, &Table, &Path) -> Res<Vec<PathBuf>>;
    let jobs: [(&str, &Path, Job); 3] = [
        ("echo", &args.echo, echo_charts),
        ("idle-memory", &args.idle, idle_chart),
        ("fan-out", &args.fanout, fanout_chart),
    ];
    for (what, path, job) in jobs {
        let table = match Table::read(path) {
            Ok(Some(t)) => t,
            Ok(None) => {
                eprintln!(
                    "charts: no {what} results ({} not found): skipping its charts",
                    path.display()
                );
                continue;
            }
            Err(e) => {
                eprintln!("charts: {}: {e}", path.display());
                failed = true;
                continue;
            }
        };
        if let Err(e) = std::fs::create_dir_all(&args.out) {
            eprintln!("charts: cannot create {}: {e}", args.out.display());
            return ExitCode::FAILURE;
        }
        match job(&args, &table, path) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                    written += 1;
                }
            }
            Err(e) => {
                eprintln!("charts: {what} ({}): {e}", path.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else if written == 0 {
        eprintln!(
            "charts: no chart written: run scripts/bench-echo.sh, bench-idle.sh or bench-fanout.sh first"
        );
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Registers the font file (and its bold face beside it, if there is one) with plotters'
/// ab_glyph text renderer.
fn register_fonts(path: &Path) -> Result<(), String> {
    let load = |p: &Path| -> Result<&'static [u8], String> {
        std::fs::read(p)
            .map(|b| &*Box::leak(b.into_boxed_slice()))
            .map_err(|e| e.to_string())
    };
    let regular = load(path).map_err(|e| {
        format!(
            "cannot read the font {}: {e}\n  install Debian's fonts-dejavu-core \
             (apt-get install fonts-dejavu-core) or pass --font PATH to a TrueType file",
            path.display()
        )
    })?;
    plotters::style::register_font(FONT, FontStyle::Normal, regular)
        .map_err(|_| format!("{}: not a TrueType/OpenType font", path.display()))?;
    // DejaVuSans.ttf → DejaVuSans-Bold.ttf beside it; without one, the regular face stands in.
    let bold = path
        .file_stem()
        .and_then(|s| s.to_str())
        .map(|s| path.with_file_name(format!("{s}-Bold.ttf")))
        .and_then(|p| load(&p).ok());
    if let Some(bold) = bold {
        // Not a font after all: the regular face stands in.
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, bold);
    }
    Ok(())
}

// --- CSV ----------------------------------------------------------------------------------------

/// A CSV file with a header line (quoted fields as Python's csv module writes them).
struct Table {
    columns: HashMap<String, usize>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// The table, or `None` if the file does not exist.
    fn read(path: &Path) -> Res<Option<Table>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut records = parse_csv(&text).into_iter();
        let header = records.next().ok_or("empty file")?;
        let columns = header
            .into_iter()
            .enumerate()
            .map(|(i, c)| (c.trim().to_string(), i))
            .collect();
        let rows = records
            .filter(|r| !(r.len() == 1 && r[0].is_empty()))
            .collect();
        Ok(Some(Table { columns, rows }))
    }

    fn require(&self, names: &[&str]) -> Res<()> {
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| !self.columns.contains_key(*n))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("not the expected CSV: no column {}", missing.join(", ")).into())
        }
    }

    fn get<'a>(&self, row: &'a [String], name: &str) -> &'a str {
        self.columns
            .get(name)
            .and_then(|&i| row.get(i))
            .map_or("", |s| s.trim())
    }

    fn num(&self, row: &[String], name: &str) -> Option<f64> {
        self.get(row, name)
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    }

    /// Distinct values of a column in order of first appearance.
    fn distinct<'a>(&self, rows: impl Iterator<Item = &'a Vec<String>>, name: &str) -> Vec<String> {
        let mut seen = Vec::<String>::new();
        for r in rows {
            let v = self.get(r, name);
            if !v.is_empty() && !seen.iter().any(|s| s == v) {
                seen.push(v.to_string());
            }
        }
        seen
    }
}

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

// --- statistics ---------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
    /// Rounds the median is over.
    n: usize,
    /// All of them were contended: not comparable.
    contended: bool,
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Median, min and max of `(value, contended)` pairs: the uncontended ones, or all of them if
/// every one was contended.
fn stat(values: &[(f64, bool)]) -> Option<Stat> {
    let clean: Vec<f64> = values.iter().filter(|v| !v.1).map(|v| v.0).collect();
    let (mut v, contended) = if clean.is_empty() {
        (values.iter().map(|v| v.0).collect::<Vec<_>>(), true)
    } else {
        (clean, false)
    };
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(Stat {
        median: median(&v),
        min: v[0],
        max: v[v.len() - 1],
        n: v.len(),
        contended,
    })
}

fn contended(t: &Table, row: &[String], other_max: f64) -> bool {
    t.num(row, "other_cpu").is_some_and(|o| o > other_max)
}

/// "3 rounds" or "2–3 rounds" for the stats drawn.
fn rounds_note(stats: &[Stat]) -> String {
    let lo = stats.iter().map(|s| s.n).min().unwrap_or(0);
    let hi = stats.iter().map(|s| s.n).max().unwrap_or(0);
    let plural = if hi == 1 { "" } else { "s" };
    if lo == hi {
        format!("{hi} round{plural}")
    } else {
        format!("{lo}–{hi} rounds")
    }
}

// --- number formatting --------------------------------------------------------------------------

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

/// 64 B, 1 KiB, 1 MiB.
fn bytes(b: f64) -> String {
    if b >= 1048576.0 && b % 1048576.0 == 0.0 {
        format!("{} MiB", b / 1048576.0)
    } else if b >= 1024.0 && b % 1024.0 == 0.0 {
        format!("{} KiB", b / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// Three significant digits at most, with k/M/G.
fn short(v: f64) -> String {
    let (v, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, "G"),
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    format!("{}{suffix}", sig3(v))
}

fn sig3(v: f64) -> String {
    match v.abs() {
        0.0 => "0".into(),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.2}"),
    }
}

/// An axis label: k or M as the axis' top calls for, decimals as its step does.
fn axis_label(v: f64, step: f64, top: f64) -> String {
    let (div, suffix) = match top {
        t if t >= 1e6 => (1e6, "M"),
        t if t >= 1e4 => (1e3, "k"),
        _ => (1.0, ""),
    };
    if v == 0.0 {
        return "0".into();
    }
    let decimals = (-(step / div).log10()).ceil().clamp(0.0, 3.0) as usize;
    format!("{:.*}{suffix}", decimals, v / div)
}

// --- chart model --------------------------------------------------------------------------------

struct Bar {
    series: usize,
    stat: Stat,
    label: String,
}

struct Group {
    /// Lines under the group: the first in bold.
    lines: Vec<String>,
    bars: Vec<Bar>,
}

struct Panel {
    caption: Option<String>,
    y_desc: String,
    groups: Vec<Group>,
    /// A horizontal reference line (1.0 for normalised charts).
    reference: Option<f64>,
    /// Logarithmic y axis (for values spanning orders of magnitude).
    log: bool,
}

struct Figure {
    size: (u32, u32),
    title: String,
    subtitle: Vec<String>,
    series: Vec<String>,
    panels: Vec<Panel>,
    notes: Vec<String>,
}

// Tableau 10, for servers without a fixed colour.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4E, 0x79, 0xA7),
    RGBColor(0xF2, 0x8E, 0x2B),
    RGBColor(0xE1, 0x57, 0x59),
    RGBColor(0x76, 0xB7, 0xB2),
    RGBColor(0x59, 0xA1, 0x4F),
    RGBColor(0xED, 0xC9, 0x48),
    RGBColor(0xB0, 0x7A, 0xA1),
    RGBColor(0xFF, 0x9D, 0xA7),
    RGBColor(0x9C, 0x75, 0x5F),
    RGBColor(0xBA, 0xB0, 0xAC),
];

/// The same server keeps its colour across charts: tidings in blues, the peers in other hues.
fn series_colors(names: &[String]) -> Vec<RGBColor> {
    // The hues no fixed server has.
    let mut spare = [5, 7, 8, 3, 9, 0].map(|i| PALETTE[i]).into_iter().cycle();
    names
        .iter()
        .map(|n| match n.as_str() {
            "tidings-tokio" | "tidings-hub" => RGBColor(0x1F, 0x5A, 0xA6),
            "tidings-smol" | "tidings-hub/inline" => RGBColor(0x5F, 0xA8, 0xE0),
            "tidings-compio" => RGBColor(0x0B, 0x2E, 0x5C),
            "tokio-tungstenite" | "tokio-tungstenite-broadcast" => PALETTE[1],
            "tokio-websockets" => PALETTE[4],
            "fastwebsockets" => PALETTE[2],
            "async-tungstenite-smol" => PALETTE[6],
            _ => spare.next().unwrap(),
        })
        .collect()
}

/// Servers in order of first appearance (round 1 lists them in the script's order), the tidings
/// ones first.
fn order_servers(mut names: Vec<String>) -> Vec<String> {
    names.sort_by_key(|n| !n.starts_with("tidings"));
    names
}

// --- drawing ------------------------------------------------------------------------------------

const TEXT: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x55, 0x55, 0x55);
const GRID: RGBColor = RGBColor(0xE4, 0xE4, 0xE4);

fn style(bold: bool, size: u32, color: RGBColor) -> TextStyle<'static> {
    let face = if bold {
        FontStyle::Bold
    } else {
        FontStyle::Normal
    };
    TextStyle {
        font: (FONT, size, face).into_font(),
        color: color.to_backend_color(),
        pos: Pos::default(),
    }
}

fn draw_figure(path: &Path, fig: &Figure) -> Res<()> {
    let (w, h) = fig.size;
    let root = BitMapBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE)?;

    // Header: title, subtitle, legend.
    let x0 = 24;
    let mut y = 14;
    root.draw(&Text::new(
        fig.title.clone(),
        (x0, y),
        style(true, 24, TEXT),
    ))?;
    y += 34;
    for line in &fig.subtitle {
        root.draw(&Text::new(line.clone(), (x0, y), style(false, 16, MUTED)))?;
        y += 22;
    }
    y += 8;
    let colors = series_colors(&fig.series);
    let legend = style(false, 16, TEXT);
    let mut x = x0;
    for (name, color) in fig.series.iter().zip(&colors) {
        let (tw, _) = root.estimate_text_size(name, &legend)?;
        if x > x0 && x + 22 + tw as i32 > w as i32 - x0 {
            x = x0;
            y += 24;
        }
        root.draw(&Rectangle::new(
            [(x, y + 1), (x + 16, y + 17)],
            color.filled(),
        ))?;
        root.draw(&Text::new(name.clone(), (x + 22, y), legend.clone()))?;
        x += 22 + tw as i32 + 30;
    }
    y += 32;

    // Footer: notes.
    let footer_h = 12 + 20 * fig.notes.len() as i32;
    let (_, rest) = root.split_vertically(y);
    let (body, footer) = rest.split_vertically(h as i32 - y - footer_h);
    for (i, note) in fig.notes.iter().enumerate() {
        footer.draw(&Text::new(
            note.clone(),
            (x0, 4 + 20 * i as i32),
            style(false, 14, MUTED),
        ))?;
    }

    let panels = body.split_evenly((fig.panels.len(), 1));
    for (panel, area) in fig.panels.iter().zip(&panels) {
        draw_panel(&root, area, panel, &colors)?;
    }
    root.present()?;
    Ok(())
}

/// Tick values for a log axis from `lo` (a power of ten) up to `hi`: 1, 2, 5 × 10^k.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut ticks = Vec::new();
    let mut decade = lo;
    while decade < hi * 1.0001 {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v <= hi * 1.0001 {
                ticks.push(v);
            }
        }
        decade *= 10.0;
    }
    ticks
}

fn draw_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
    colors: &[RGBColor],
) -> Res<()>
where
    DB::ErrorType: 'static,
{
    let ngroups = panel.groups.len().max(1);
    let slots = panel
        .groups
        .iter()
        .map(|g| g.bars.len())
        .max()
        .unwrap_or(1)
        .max(1);
    let label_lines = panel
        .groups
        .iter()
        .map(|g| g.lines.len())
        .max()
        .unwrap_or(1);
    let x_label_h = 12 + 20 * label_lines as u32;
    let y_label_w = 100;
    let caption_h = if panel.caption.is_some() { 34 } else { 0 };
    let (aw, ah) = area.dim_in_pixel();
    let plot_w = aw.saturating_sub(y_label_w + 40).max(100) as f64;
    let plot_h = ah.saturating_sub(x_label_h + caption_h + 20).max(100) as f64;

    // Bars take 80% of their group, in equal slots; at most a third of the group each.
    let bar_w = (0.8 / slots as f64).min(0.34);
    let bar_px = plot_w / ngroups as f64 * bar_w;
    let value_style = style(false, 14, TEXT);
    let widest = panel
        .groups
        .iter()
        .flat_map(|g| &g.bars)
        .map(|b| area.estimate_text_size(&b.label, &value_style).map(|s| s.0))
        .try_fold(0, |m, w| w.map(|w| m.max(w)))?;
    let rotate = widest as f64 > bar_px + 6.0;
    let label_px = if rotate { widest as f64 + 8.0 } else { 24.0 };

    // Vertical axis: linear from 0, or log from the decade below the smallest value; room above
    // the highest whisker for its label.
    let tops = panel
        .groups
        .iter()
        .flat_map(|g| &g.bars)
        .map(|b| b.stat.max.max(b.stat.median))
        .chain(panel.reference)
        .fold(0.0f64, f64::max);
    let headroom = (label_px + 6.0) / plot_h;
    let (y_lo, y_hi) = if panel.log {
        let lows = panel
            .groups
            .iter()
            .flat_map(|g| &g.bars)
            .map(|b| b.stat.min.min(b.stat.median))
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let lo = 10f64.powf(lows.log10().floor());
        let top = tops.log10();
        let span = (top - lo.log10()) / (1.0 - headroom).max(0.3);
        (lo.log10(), lo.log10() + span)
    } else {
        (
            0.0,
            (tops / (1.0 - headroom).max(0.3)).max(f64::MIN_POSITIVE),
        )
    };
    let ty = |v: f64| if panel.log { v.max(1e-300).log10() } else { v };

    let mut builder = ChartBuilder::on(area);
    builder
        .margin_top(10)
        .margin_right(30)
        .margin_left(10)
        .x_label_area_size(x_label_h)
        .y_label_area_size(y_label_w);
    if let Some(c) = &panel.caption {
        builder.caption(c, style(true, 18, TEXT));
    }
    let mut chart = builder.build_cartesian_2d(0f64..ngroups as f64, y_lo..y_hi)?;
    // Linear: about 8 labels; log: 1, 2, 5 × 10^k, drawn below with the grid.
    let step = (y_hi - y_lo) / 8.0;
    let lin_fmt = move |v: &f64| axis_label(*v, step, y_hi);
    {
        let mut mesh = chart.configure_mesh();
        mesh.disable_x_mesh()
            .x_labels(0)
            .y_desc(panel.y_desc.as_str())
            .axis_desc_style(style(false, 16, TEXT))
            .label_style(style(false, 14, TEXT))
            .bold_line_style(GRID)
            .light_line_style(TRANSPARENT)
            .axis_style(MUTED);
        if panel.log {
            mesh.y_labels(0);
        } else {
            mesh.y_labels(8).y_label_formatter(&lin_fmt);
        }
        mesh.draw()?;
    }
    if panel.log {
        let label = style(false, 14, TEXT).pos(Pos::new(HPos::Right, VPos::Center));
        let top = 10f64.powf(y_hi);
        for t in log_ticks(10f64.powf(y_lo), top) {
            let yv = t.log10();
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(0.0, yv), (ngroups as f64, yv)],
                GRID,
            )))?;
            let (px, py) = chart.backend_coord(&(0.0, yv));
            root.draw(&Text::new(
                axis_label(t, t, top),
                (px - 8, py),
                label.clone(),
            ))?;
        }
    }
    if let Some(r) = panel.reference {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(0.0, ty(r)), (ngroups as f64, ty(r))],
            MUTED.stroke_width(1),
        )))?;
    }

    let whisker = RGBColor(0x33, 0x33, 0x33).stroke_width(2);
    let label_style = if rotate {
        value_style
            .clone()
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Left, VPos::Center))
    } else {
        value_style
            .clone()
            .pos(Pos::new(HPos::Center, VPos::Bottom))
    };
    for (gi, group) in panel.groups.iter().enumerate() {
        let k = group.bars.len() as f64;
        let start = gi as f64 + 0.5 - k * bar_w / 2.0;
        for (bi, bar) in group.bars.iter().enumerate() {
            let x0 = start + bi as f64 * bar_w;
            let (x1, xc) = (x0 + bar_w * 0.92, x0 + bar_w * 0.46);
            let color = colors[bar.series];
            let s = bar.stat;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, y_lo), (x1, ty(s.median))],
                color.filled(),
            )))?;
            if s.max > s.min {
                let cap = bar_w * 0.18;
                chart.draw_series([
                    PathElement::new(vec![(xc, ty(s.min)), (xc, ty(s.max))], whisker),
                    PathElement::new(vec![(xc - cap, ty(s.max)), (xc + cap, ty(s.max))], whisker),
                    PathElement::new(vec![(xc - cap, ty(s.min)), (xc + cap, ty(s.min))], whisker),
                ])?;
            }
            let (px, py) = chart.backend_coord(&(xc, ty(s.max.max(s.median))));
            root.draw(&Text::new(
                bar.label.clone(),
                (px, py - 5),
                label_style.clone(),
            ))?;
        }
        // The group's lines under the axis.
        let (px, py) = chart.backend_coord(&(gi as f64 + 0.5, y_lo));
        for (li, line) in group.lines.iter().enumerate() {
            let color = if li == 0 { TEXT } else { MUTED };
            let st = style(li == 0, if li == 0 { 16 } else { 14 }, color)
                .pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(line.clone(), (px, py + 10 + 20 * li as i32), st))?;
        }
    }
    Ok(())
}

// --- echo ---------------------------------------------------------------------------------------

fn echo_charts(args: &Args, t: &Table, src: &Path) -> Res<Vec<PathBuf>> {
    t.require(&["round", "scenario", "server", "msgs_per_sec", "server_cpu"])?;
    let rows: Vec<&Vec<String>> = t
        .rows
        .iter()
        .filter(|r| t.num(r, "msgs_per_sec").is_some())
        .collect();
    let scenarios: Vec<&str> = ECHO_SCENARIOS
        .iter()
        .copied()
        .filter(|sc| rows.iter().any(|r| t.get(r, "scenario") == *sc))
        .collect();
    if scenarios.is_empty() {
        return Err(format!(
            "no result for the scenarios {} (rows with msgs_per_sec)",
            ECHO_SCENARIOS.join(", ")
        )
        .into());
    }
    let servers = order_servers(
        t.distinct(
            rows.iter()
                .copied()
                .filter(|r| scenarios.contains(&t.get(r, "scenario"))),
            "server",
        ),
    );
    let mut files = Vec::new();
    for cpu in [false, true] {
        // Per scenario and server: msgs/s, or msgs/s over the server's CPU use in cores.
        let value = |r: &[String]| {
            let m = t.num(r, "msgs_per_sec")?;
            if cpu {
                t.num(r, "server_cpu").filter(|c| *c > 0.0).map(|c| m / c)
            } else {
                Some(m)
            }
        };
        let mut groups = Vec::new();
        let mut all = Vec::new();
        let mut reference_fallback = false;
        for sc in &scenarios {
            let stats: Vec<(usize, Stat)> = servers
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let v: Vec<(f64, bool)> = rows
                        .iter()
                        .filter(|r| t.get(r, "scenario") == *sc && t.get(r, "server") == s)
                        .filter_map(|r| Some((value(r)?, contended(t, r, args.other_max))))
                        .collect();
                    stat(&v).map(|st| (i, st))
                })
                .collect();
            // The fastest peer's median is 1.0 (the fastest server if no peer ran).
            let peer = stats
                .iter()
                .filter(|(i, _)| ECHO_PEERS.contains(&servers[*i].as_str()))
                .max_by(|a, b| a.1.median.total_cmp(&b.1.median))
                .or_else(|| {
                    reference_fallback = true;
                    stats
                        .iter()
                        .max_by(|a, b| a.1.median.total_cmp(&b.1.median))
                });
            let Some(&(pi, pstat)) = peer else { continue };
            let base = pstat.median;
            if base <= 0.0 {
                continue;
            }
            let first = rows.iter().find(|r| t.get(r, "scenario") == *sc).unwrap();
            let shape = format!(
                "{} conns × {} in flight",
                t.get(first, "conns"),
                t.get(first, "inflight")
            );
            let unit = if cpu { "msgs/CPU-s" } else { "msgs/s" };
            let lines = vec![
                sc.to_string(),
                shape,
                format!("1.0 = {}", servers[pi]),
                format!("= {} {unit}", thousands(base)),
            ];
            let bars = stats
                .into_iter()
                .map(|(i, st)| {
                    all.push(st);
                    let norm = Stat {
                        median: st.median / base,
                        min: st.min / base,
                        max: st.max / base,
                        ..st
                    };
                    let mark = if st.contended { "*" } else { "" };
                    Bar {
                        series: i,
                        stat: norm,
                        label: format!("{:.2}{mark}", norm.median),
                    }
                })
                .collect();
            groups.push(Group { lines, bars });
        }
        if groups.is_empty() {
            continue;
        }
        let reference = if reference_fallback {
            "the fastest peer (the fastest server where no peer ran)"
        } else {
            "the fastest peer"
        };
        let (name, title, subtitle, y_desc) = if cpu {
            (
                "echo-cpu.png",
                "Echo: messages per server CPU-second, relative to the fastest peer",
                "msgs/s ÷ the server's CPU use in cores (server pinned to one core), per scenario; \
                 1.0 = the fastest peer's median",
                "msgs per server CPU-second, × fastest peer",
            )
        } else {
            (
                "echo-throughput.png",
                "Echo throughput: msgs/s relative to the fastest peer",
                "Completed round trips per second, per scenario; 1.0 = the fastest peer's median \
                 (its msgs/s under each scenario)",
                "msgs/s, × fastest peer",
            )
        };
        let mut notes = vec![
            format!(
                "Bars: medians over {}, whiskers: min–max; 1.0 = {reference}. Server on CPU 0, \
                 load generator on CPU 1.",
                rounds_note(&all)
            ),
            format!(
                "Left out: failed measurements and those during which other work took > {} cores; \
                 * = all rounds of that bar were contended (not comparable).",
                args.other_max
            ),
        ];
        notes.push(format!(
            "Source: {} (scripts/bench-echo.sh).",
            src.display()
        ));
        let fig = Figure {
            size: (1500, 860),
            title: title.into(),
            subtitle: vec![subtitle.into()],
            series: servers.clone(),
            panels: vec![Panel {
                caption: None,
                y_desc: y_desc.into(),
                groups,
                reference: Some(1.0),
                log: false,
            }],
            notes,
        };
        let path = args.out.join(name);
        draw_figure(&path, &fig)?;
        files.push(path);
    }
    Ok(files)
}

// --- idle memory --------------------------------------------------------------------------------

fn idle_chart(args: &Args, t: &Table, src: &Path) -> Res<Vec<PathBuf>> {
    t.require(&["round", "server", "connections"])?;
    // KiB per connection: bytes_per_conn (empty where the script had no result), or without that
    // column the RSS growth over the established connections.
    let has_bytes = t.columns.contains_key("bytes_per_conn");
    let kib = |r: &[String]| -> Option<f64> {
        let b = if has_bytes {
            t.num(r, "bytes_per_conn")?
        } else {
            let (before, after) = (t.num(r, "rss_before_kb")?, t.num(r, "rss_after_kb")?);
            let n = t.num(r, "established").filter(|n| *n > 0.0)?;
            (after - before) * 1024.0 / n
        };
        Some(b / 1024.0)
    };
    let rows: Vec<&Vec<String>> = t.rows.iter().filter(|r| kib(r).is_some()).collect();
    if rows.is_empty() {
        return Err(
            "no row with bytes_per_conn (or rss_before_kb, rss_after_kb, established)".into(),
        );
    }
    let servers = order_servers(t.distinct(rows.iter().copied(), "server"));
    let mut counts = t.distinct(rows.iter().copied(), "connections");
    counts.sort_by(|a, b| {
        let n = |s: &str| s.parse::<f64>().unwrap_or(f64::MAX);
        n(a).total_cmp(&n(b))
    });
    let count = |c: &str| c.parse::<f64>().map_or_else(|_| c.to_string(), thousands);
    // The one echo each connection made (bench-idle.sh's SIZE), if the CSV says.
    let size_line = |c: &str| {
        let first = rows.iter().find(|r| t.get(r, "connections") == c)?;
        let b = t.num(first, "size")?;
        Some(format!("after one {} echo each", bytes(b)))
    };
    let mut all = Vec::new();
    let mut groups = Vec::new();
    let mut failures = Vec::new();
    for c in &counts {
        let of = |r: &&&Vec<String>| t.get(r, "connections") == c;
        let bars: Vec<Bar> = servers
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let mine: Vec<_> = rows
                    .iter()
                    .filter(of)
                    .filter(|r| t.get(r, "server") == s)
                    .collect();
                let failed: f64 = mine.iter().filter_map(|r| t.num(r, "failed")).sum();
                if failed > 0.0 {
                    failures.push(format!("{s}: {} of {}", thousands(failed), count(c)));
                }
                let v: Vec<(f64, bool)> = mine
                    .iter()
                    .filter_map(|r| Some((kib(r)?, contended(t, r, args.other_max))))
                    .collect();
                let st = stat(&v)?;
                all.push(st);
                let mark = if st.contended { "*" } else { "" };
                Some(Bar {
                    series: i,
                    stat: st,
                    label: format!("{}{mark}", sig3(st.median)),
                })
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        groups.push(Group {
            lines: std::iter::once(format!("{} idle connections", count(c)))
                .chain(size_line(c))
                .collect(),
            bars,
        });
    }
    let mut notes = vec![format!(
        "Bars: medians over {}, whiskers: min–max. KiB per connection: (server RSS with the \
         connections open − RSS before) ÷ connections established.",
        rounds_note(&all)
    )];
    if !failures.is_empty() {
        notes.push(format!(
            "Connections that failed (all rounds): {}.",
            failures.join("; ")
        ));
    }
    notes.push(format!(
        "Source: {} (scripts/bench-idle.sh).",
        src.display()
    ));
    let fig = Figure {
        size: (1100, 700),
        title: "Idle connections: server memory per connection (KiB)".into(),
        subtitle: vec![
            "Resident memory the server gains per open, idle WebSocket connection; lower is better"
                .into(),
        ],
        series: servers,
        panels: vec![Panel {
            caption: None,
            y_desc: "KiB of server RSS per idle connection".into(),
            groups,
            reference: None,
            log: false,
        }],
        notes,
    };
    let path = args.out.join("idle-memory.png");
    draw_figure(&path, &fig)?;
    Ok(vec![path])
}

// --- fan-out ------------------------------------------------------------------------------------

fn fanout_chart(args: &Args, t: &Table, src: &Path) -> Res<Vec<PathBuf>> {
    t.require(&[
        "round",
        "scenario",
        "server",
        "ok",
        "deliveries_per_sec",
        "p99_us",
    ])?;
    let rows: Vec<&Vec<String>> = t
        .rows
        .iter()
        .filter(|r| t.get(r, "ok") == "1" && t.num(r, "deliveries_per_sec").is_some())
        .collect();
    if rows.is_empty() {
        return Err("no successful measurement (ok = 1)".into());
    }
    let failed = t.rows.len() - rows.len();
    let servers = order_servers(t.distinct(rows.iter().copied(), "server"));
    let scenarios = t.distinct(rows.iter().copied(), "scenario");
    let mut all = Vec::new();
    let mut panels = Vec::new();
    for (key, scale) in [("deliveries_per_sec", 1.0), ("p99_us", 1e-3)] {
        let latency = key == "p99_us";
        // Deliveries/s with k and M; milliseconds in full.
        let fmt = |v: f64| {
            if latency && v >= 1e3 {
                thousands(v)
            } else if latency {
                sig3(v)
            } else {
                short(v)
            }
        };
        let mut groups = Vec::new();
        for sc in &scenarios {
            let first = rows.iter().find(|r| t.get(r, "scenario") == sc).unwrap();
            let subs = t.num(first, "subs").map_or("?".into(), thousands);
            let size = t.num(first, "size").map_or("?".into(), bytes);
            let mut lines = vec![sc.clone(), format!("{subs} subs × {size}")];
            if let Some(slow) = t.num(first, "slow").filter(|s| *s > 0.0) {
                lines.push(format!("+ {slow} slow reader"));
            }
            let bars: Vec<Bar> = servers
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let v: Vec<(f64, bool)> = rows
                        .iter()
                        .filter(|r| t.get(r, "scenario") == sc && t.get(r, "server") == s)
                        .filter_map(|r| {
                            Some((t.num(r, key)? * scale, contended(t, r, args.other_max)))
                        })
                        .collect();
                    let st = stat(&v)?;
                    all.push(st);
                    let mark = if st.contended { "*" } else { "" };
                    Some(Bar {
                        series: i,
                        stat: st,
                        label: format!("{}{mark}", fmt(st.median)),
                    })
                })
                .collect();
            if !bars.is_empty() {
                groups.push(Group { lines, bars });
            }
        }
        let meds: Vec<f64> = groups
            .iter()
            .flat_map(|g| &g.bars)
            .map(|b| b.stat.median)
            .filter(|v| *v > 0.0)
            .collect();
        let spread = meds.iter().copied().fold(0.0, f64::max)
            / meds.iter().copied().fold(f64::INFINITY, f64::min);
        let log = latency && spread > 30.0;
        panels.push(Panel {
            caption: Some(if latency {
                format!(
                    "p99 latency, publisher's send → delivery (ms{}; lower is better)",
                    if log { ", log scale" } else { "" }
                )
            } else {
                "Deliveries per second: messages received by all subscribers together (higher is better)"
                    .into()
            }),
            y_desc: if latency { "p99 latency, ms" } else { "deliveries/s" }.into(),
            groups,
            reference: None,
            log,
        });
    }
    let window = rows
        .first()
        .map(|r| t.get(r, "window").to_string())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "?".into());
    let mut notes = vec![
        format!(
            "Bars: medians over {}, whiskers: min–max. One publisher, {window} messages in flight \
             (closed loop); server on CPU 0, load generator on CPU 1.",
            rounds_note(&all)
        ),
        format!(
            "Left out: failed measurements ({failed} in the CSV) and those during which other \
             work took > {} cores; * = all rounds of that bar were contended (not comparable).",
            args.other_max
        ),
    ];
    notes.push(format!(
        "Source: {} (scripts/bench-fanout.sh).",
        src.display()
    ));
    let fig = Figure {
        size: (1500, 1100),
        title: "Hub fan-out: deliveries/s and p99 latency per scenario".into(),
        subtitle: vec![
            "Every message the publisher sends reaches every subscriber; scenarios: subscribers × \
             message size (binary)"
                .into(),
        ],
        series: servers,
        panels,
        notes,
    };
    let path = args.out.join("fanout.png");
    draw_figure(&path, &fig)?;
    Ok(vec![path])
}
