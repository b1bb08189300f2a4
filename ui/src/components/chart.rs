//! Charts: plotters draws an SVG document into a string (`svg_backend`; on wasm32 it measures text with a canvas),
//! and [`Chart`] sets it as a div's inner HTML. The numbers come from `dps_console_model::charts`; the legends are
//! HTML next to the chart.

use dps_console_model::charts::{axis_max, HubShare, MinuteBucket};
use leptos::prelude::*;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 210;

pub const ASSIGNED: RGBColor = RGBColor(0x2e, 0x9e, 0x5b);
pub const FAILED: RGBColor = RGBColor(0xd9, 0x3f, 0x3f);
pub const OTHER: RGBColor = RGBColor(0x9a, 0xa5, 0xb1);
/// Throttled requests (Azure limits profile), stacked above the registrations.
pub const THROTTLED: RGBColor = RGBColor(0x8e, 0x44, 0xad);
pub const DEVICES: RGBColor = RGBColor(0x2f, 0x6f, 0xdb);
pub const WEIGHT: RGBColor = RGBColor(0xe0, 0xa1, 0x2b);
const AXIS: RGBColor = RGBColor(0x88, 0x88, 0x88);
const GRID: RGBColor = RGBColor(0x88, 0x90, 0x9a);

/// A CSS colour (`#2e9e5b`) for a legend swatch.
pub fn css(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn render(draw: impl FnOnce(&mut String) -> DrawResult) -> String {
    let mut svg = String::new();
    match draw(&mut svg) {
        Ok(()) => svg,
        Err(e) => format!("<p class=\"muted\">The chart could not be drawn: {}</p>", e.to_string().replace('<', "&lt;")),
    }
}

/// As many count labels as fit whole numbers (at most 6).
fn y_labels(max: f64) -> usize {
    (max as usize).clamp(1, 5) + 1
}

/// A count axis label; nothing between whole numbers.
fn count_label(y: &f64) -> String {
    if (y - y.round()).abs() < 1e-6 {
        format!("{y:.0}")
    } else {
        String::new()
    }
}

/// A hub host name short enough for an axis label: its first DNS label, at most 16 characters.
fn short_host(host: &str) -> String {
    let first = host.split('.').next().unwrap_or(host);
    if first.chars().count() > 16 {
        format!("{}…", first.chars().take(15).collect::<String>())
    } else {
        first.to_string()
    }
}

/// Stacked bars per minute: assigned, failed, other. The last bucket is the current minute.
pub fn registrations_svg(buckets: &[MinuteBucket]) -> String {
    render(|out| {
        let n = buckets.len().max(1) as f64;
        let max = axis_max(buckets.iter().map(|b| b.total() + b.throttled).max().unwrap_or(0)) as f64;
        let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
        let mut chart =
            ChartBuilder::on(&root).margin(8).x_label_area_size(24).y_label_area_size(36).build_cartesian_2d(0f64..n, 0f64..max)?;
        let label = |x: &f64| {
            let ago = (n - x).round() as i64;
            if ago <= 0 {
                "now".to_string()
            } else {
                format!("-{ago} min")
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(7)
            .y_labels(y_labels(max))
            .x_label_formatter(&label)
            .y_label_formatter(&count_label)
            .axis_style(AXIS)
            .light_line_style(TRANSPARENT)
            .bold_line_style(GRID.mix(0.3))
            .label_style(("sans-serif", 12).into_font().color(&AXIS))
            .draw()?;
        chart.draw_series(buckets.iter().enumerate().flat_map(|(i, b)| {
            let x = i as f64;
            let (a, f, t) = (b.assigned as f64, (b.assigned + b.failed) as f64, b.total() as f64);
            let th = (b.total() + b.throttled) as f64;
            [(0.0, a, ASSIGNED), (a, f, FAILED), (f, t, OTHER), (t, th, THROTTLED)]
                .into_iter()
                .filter(|(lo, hi, _)| hi > lo)
                .map(move |(lo, hi, c)| Rectangle::new([(x + 0.12, lo), (x + 0.88, hi)], c.filled()))
        }))?;
        root.present()?;
        Ok(())
    })
}

/// A bar of a per-hub chart: the hub's index, where in its slot (0–1) the bar starts and ends, its value, colour.
type HubBar = (usize, f64, f64, f64, RGBColor);

/// Bars per hub over a 0–`max` axis, each hub's name under its slot. The names are drawn at the slots' centres
/// (a segmented axis of plotters cannot hold a single hub).
fn hub_bars(out: &mut String, names: &[String], max: f64, percent: bool, bars: &[HubBar]) -> DrawResult {
    let n = names.len().max(1) as f64;
    let root = SVGBackend::with_string(out, (WIDTH, HEIGHT)).into_drawing_area();
    let mut chart = ChartBuilder::on(&root).margin(8).x_label_area_size(24).y_label_area_size(40).build_cartesian_2d(0f64..n, 0f64..max)?;
    let percent_label = |y: &f64| format!("{y:.0} %");
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_labels(if percent { 5 } else { y_labels(max) })
        .y_label_formatter(if percent { &percent_label } else { &count_label })
        .axis_style(AXIS)
        .light_line_style(TRANSPARENT)
        .bold_line_style(GRID.mix(0.3))
        .label_style(("sans-serif", 12).into_font().color(&AXIS))
        .draw()?;
    chart.draw_series(bars.iter().filter(|b| b.3 > 0.0).map(|&(i, from, to, v, c)| {
        let x = i as f64;
        Rectangle::new([(x + from, 0.0), (x + to, v)], c.filled())
    }))?;
    let style = ("sans-serif", 12).into_font().color(&AXIS).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, name) in names.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        root.draw(&Text::new(name.clone(), (px, py + 6), style.clone()))?;
    }
    root.present()?;
    Ok(())
}

/// One bar per hub: the devices assigned to it.
pub fn devices_per_hub_svg(shares: &[HubShare]) -> String {
    let names: Vec<String> = shares.iter().map(|s| short_host(&s.host_name)).collect();
    let max = axis_max(shares.iter().map(|s| s.devices).max().unwrap_or(0)) as f64;
    let bars: Vec<HubBar> = shares.iter().enumerate().map(|(i, s)| (i, 0.2, 0.8, s.devices as f64, DEVICES)).collect();
    render(|out| hub_bars(out, &names, max, false, &bars))
}

/// Two bars per hub: its share of the assigned devices and its share of the allocation weight (percent).
pub fn allocation_svg(shares: &[HubShare]) -> String {
    let names: Vec<String> = shares.iter().map(|s| short_host(&s.host_name)).collect();
    let bars: Vec<HubBar> = shares
        .iter()
        .enumerate()
        .flat_map(|(i, s)| [(i, 0.12, 0.49, s.device_share * 100.0, DEVICES), (i, 0.51, 0.88, s.weight_share * 100.0, WEIGHT)])
        .collect();
    render(|out| hub_bars(out, &names, 100.0, true, &bars))
}

/// A legend entry: a coloured swatch and its name.
#[component]
pub fn LegendItem(color: RGBColor, #[prop(into)] label: String) -> impl IntoView {
    view! {
        <span class="legend-item">
            <span class="swatch" style=format!("background:{}", css(color))></span>
            {label}
        </span>
    }
}

/// The SVG a chart function drew, in a div with the given test id.
#[component]
pub fn Chart(#[prop(into)] svg: Signal<String>, testid: &'static str, #[prop(into)] label: String) -> impl IntoView {
    view! { <div class="chart" data-testid=testid role="img" aria-label=label inner_html=move || svg.get()></div> }
}
