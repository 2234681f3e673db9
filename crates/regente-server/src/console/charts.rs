//! Charts drawn on the server as SVG: no script, no library. Each chart is an
//! image with a title for screen readers; its numbers are in a table beside it.
//! Colours come from the stylesheet (classes), so both themes apply.

use std::fmt::Write as _;

/// Text for SVG and HTML, escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 36.0;
const BOTTOM: f64 = 20.0;

fn open(title: &str, height: f64) -> String {
    format!(
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{}"><title>{}</title>"#,
        escape(title),
        escape(title)
    )
}

/// A period's label under the axis.
fn period_label(svg: &mut String, x: f64, label: &str) {
    let _ = write!(
        svg,
        r#"<text x="{x:.1}" y="{:.1}">{}</text>"#,
        HEIGHT - 4.0,
        escape(label)
    );
}

/// Stacked bars, one per period: (label, [finished, error, canceled]).
pub fn stacked_runs(title: &str, periods: &[(String, [u64; 3])]) -> String {
    let mut svg = open(title, HEIGHT);
    let max = periods
        .iter()
        .map(|(_, counts)| counts.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot = HEIGHT - BOTTOM;
    let step = (WIDTH - LEFT) / periods.len().max(1) as f64;
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{plot}" x2="{WIDTH}" y2="{plot}"/><text x="0" y="12">{max}</text><text x="0" y="{plot}">0</text>"#
    );
    let classes = ["bar-FINISHED", "bar-ERROR", "bar-CANCELED"];
    let label_every = (periods.len() / 12).max(1);
    for (i, (label, counts)) in periods.iter().enumerate() {
        let x = LEFT + i as f64 * step;
        let mut y = plot;
        for (count, class) in counts.iter().zip(classes) {
            if *count == 0 {
                continue;
            }
            let h = *count as f64 / max as f64 * (plot - 4.0);
            y -= h;
            let _ = write!(
                svg,
                r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}"/>"#,
                (step - 1.0).max(0.5)
            );
        }
        if i % label_every == 0 {
            period_label(&mut svg, x, label);
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Bars of a share (0..=1) per period; a period without data has no bar and
/// a dash on the axis.
pub fn shares(title: &str, periods: &[(String, Option<f64>)]) -> String {
    let mut svg = open(title, HEIGHT);
    let plot = HEIGHT - BOTTOM;
    let step = (WIDTH - LEFT) / periods.len().max(1) as f64;
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{plot}" x2="{WIDTH}" y2="{plot}"/><text x="0" y="12">100%</text><text x="0" y="{plot}">0%</text>"#
    );
    let label_every = (periods.len() / 12).max(1);
    for (i, (label, share)) in periods.iter().enumerate() {
        let x = LEFT + i as f64 * step;
        match share {
            Some(share) => {
                let h = share * (plot - 4.0);
                let _ = write!(
                    svg,
                    r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}"/>"#,
                    plot - h,
                    (step - 1.0).max(0.5)
                );
            }
            None => {
                let _ = write!(svg, r#"<text x="{x:.1}" y="{:.1}">–</text>"#, plot - 2.0);
            }
        }
        if i % label_every == 0 {
            period_label(&mut svg, x, label);
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Horizontal bars: (name, count), the largest first.
pub fn ranking(title: &str, rows: &[(String, u64)]) -> String {
    let shown = &rows[..rows.len().min(10)];
    let height = 22.0 * shown.len().max(1) as f64 + 4.0;
    let mut svg = open(title, height);
    let max = shown.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let label_width = 260.0;
    for (i, (name, count)) in shown.iter().enumerate() {
        let y = 4.0 + i as f64 * 22.0;
        let w = *count as f64 / max as f64 * (WIDTH - label_width - 60.0);
        let name: String = name.chars().take(40).collect();
        let _ = write!(
            svg,
            r#"<text x="0" y="{:.1}">{}</text><rect class="bar-ERROR" x="{label_width}" y="{y:.1}" width="{w:.1}" height="16"/><text x="{:.1}" y="{:.1}">{count}</text>"#,
            y + 12.0,
            escape(&name),
            label_width + w + 6.0,
            y + 12.0
        );
    }
    if shown.is_empty() {
        svg.push_str(r#"<text x="0" y="16">no failures</text>"#);
    }
    svg.push_str("</svg>");
    svg
}

/// Day of the week (rows, Monday first) by hour of the day (columns).
pub fn heat_map(title: &str, grid: &[[u64; 24]; 7]) -> String {
    let cell = 26.0;
    let left = 40.0;
    let height = 7.0 * cell + 22.0;
    let mut svg = open(title, height);
    let max = grid.iter().flatten().copied().max().unwrap_or(0).max(1);
    for (day, name) in ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .enumerate()
    {
        let y = day as f64 * cell;
        let _ = write!(svg, r#"<text x="0" y="{:.1}">{name}</text>"#, y + 17.0);
        for (hour, count) in grid[day].iter().enumerate() {
            let x = left + hour as f64 * cell;
            if *count == 0 {
                let _ = write!(
                    svg,
                    r#"<rect class="heat-empty" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}"/>"#,
                    cell - 2.0,
                    cell - 2.0
                );
            } else {
                let opacity = 0.2 + 0.8 * (*count as f64 / max as f64);
                let _ = write!(
                    svg,
                    r#"<rect class="heat" fill-opacity="{opacity:.2}" x="{x:.1}" y="{y:.1}" width="{:.1}" height="{:.1}"><title>{name} {hour:02}:00 — {count}</title></rect>"#,
                    cell - 2.0,
                    cell - 2.0
                );
            }
        }
    }
    for hour in (0..24).step_by(3) {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">{hour:02}</text>"#,
            left + hour as f64 * cell,
            7.0 * cell + 14.0
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped() {
        let svg = ranking("t", &[("<script>&".into(), 3)]);
        assert!(svg.contains("&lt;script&gt;&amp;"));
        assert!(!svg.contains("<script>"));
    }

    #[test]
    fn periods_without_data_draw_no_bar() {
        let svg = shares("t", &[("a".into(), None), ("b".into(), Some(0.5))]);
        assert_eq!(svg.matches("<rect").count(), 1);
        assert!(svg.contains('–'));
    }
}
