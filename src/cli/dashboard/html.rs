//! The dashboard's HTML: the page around each view, tables that are also CSV, and bar
//! charts drawn as SVG on the server (no JavaScript). Pure: values in, text out.
//!
//! The charts are written by hand rather than with `plotters`: its SVG backend needs a
//! font backend to measure text, and bars with labels are a few dozen lines.

use std::fmt::Write as _;

/// Text made safe to place in HTML (element content or a quoted attribute).
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24}\
header{background:#12355b;color:#fff;padding:12px 24px}header a{color:#fff;margin-right:18px}\
main{padding:16px 24px}table{border-collapse:collapse;margin:8px 0 16px}\
th,td{border:1px solid #c8ced6;padding:4px 8px;text-align:left}td.n{text-align:right}\
th{background:#eef1f5}.up{color:#1a7f37}.down{color:#b42318}.ok{color:#1a7f37;font-weight:bold}\
.bad{color:#b42318;font-weight:bold}code{font-size:12px;word-break:break-all}";

/// A whole page: the node's name, the navigation, and `body`.
pub(super) fn page(node: &str, title: &str, body: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} — renkei {n}</title>\
         <style>{STYLE}</style></head><body><header><strong>renkei node {n}</strong> — auditor's dashboard &nbsp; \
         <a href=\"/\">Metrics</a><a href=\"/log\">Audit log</a><a href=\"/checkpoint\">Checkpoint</a>\
         <a href=\"/links\">Peer links</a></header><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title),
        n = escape(node),
    );
    out
}

/// A table with a name, shown as HTML and exported as CSV.
pub(in crate::cli) struct Table {
    pub name: &'static str,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new(name: &'static str, headers: &[&str]) -> Table {
        Table {
            name,
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// The table as HTML, each cell marked with its column (`data-col`) and numbers
    /// aligned right, then a link to the same as CSV (`csv_href`).
    pub fn to_html(&self, csv_href: &str) -> String {
        let mut out = format!("<table id=\"{}\"><thead><tr>", self.name);
        for h in &self.headers {
            let _ = write!(out, "<th>{}</th>", escape(h));
        }
        out.push_str("</tr></thead><tbody>");
        for row in &self.rows {
            out.push_str("<tr>");
            for (h, cell) in self.headers.iter().zip(row) {
                let numeric = !cell.is_empty()
                    && cell
                        .trim_start_matches(['+', '-'])
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '%' || c == '.');
                let class = if numeric { " class=\"n\"" } else { "" };
                let _ = write!(
                    out,
                    "<td data-col=\"{}\"{class}>{}</td>",
                    escape(h),
                    escape(cell)
                );
            }
            out.push_str("</tr>");
        }
        let _ = write!(
            out,
            "</tbody></table><p><a class=\"csv\" href=\"{}\">Download this table as CSV</a></p>",
            escape(csv_href)
        );
        out
    }

    /// The table as CSV (RFC 4180: fields with a comma, quote or line break quoted). A
    /// text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@` first, and not
    /// a number) gets a leading `'`.
    pub fn to_csv(&self) -> String {
        let field = |s: &str| {
            let number = s.trim_end_matches('%').parse::<f64>().is_ok();
            let s = if s.starts_with(['=', '+', '-', '@']) && !number {
                format!("'{s}")
            } else {
                s.to_owned()
            };
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s
            }
        };
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let line: Vec<String> = row.iter().map(|c| field(c)).collect();
            out.push_str(&line.join(","));
            out.push_str("\r\n");
        }
        out
    }
}

/// Colours of the series of a chart, in order.
const COLOURS: [&str; 3] = ["#12355b", "#e08a00", "#2f9e6e"];

/// A stacked bar chart: one bar per label, one band per series, with a legend.
pub(super) fn bar_chart(title: &str, labels: &[String], series: &[(&str, Vec<u64>)]) -> String {
    let (width, height, left, bottom) = (760.0, 280.0, 48.0, 40.0);
    let totals: Vec<u64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let top = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    let plot_h = height - bottom - 20.0;
    let slot = (width - left - 10.0) / labels.len().max(1) as f64;
    let mut out = format!(
        "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"{}\">",
        escape(title)
    );
    let _ = write!(
        out,
        "<line x1=\"{left}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"#555\"/><text x=\"4\" y=\"24\" font-size=\"11\">{top}</text><text x=\"4\" y=\"{y}\" font-size=\"11\">0</text>",
        y = height - bottom,
        x2 = width - 10.0,
    );
    for (i, label) in labels.iter().enumerate() {
        let x = left + slot * i as f64 + slot * 0.15;
        let mut y = height - bottom;
        for (s, (name, values)) in series.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let h = v as f64 / top * plot_h;
            y -= h;
            let _ = write!(
                out,
                "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{}: {} {v}</title></rect>",
                slot * 0.7,
                COLOURS[s % COLOURS.len()],
                escape(label),
                escape(name)
            );
        }
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
            x + slot * 0.35,
            height - bottom + 14.0,
            escape(label)
        );
    }
    for (s, (name, _)) in series.iter().enumerate() {
        let x = left + 150.0 * s as f64;
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            height - 14.0,
            COLOURS[s % COLOURS.len()],
            x + 14.0,
            height - 5.0,
            escape(name)
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_escaped_and_csv_quotes_what_it_must() {
        let mut t = Table::new("t", &["partner", "note"]);
        t.rows
            .push(vec!["<b>us-dod</b>".into(), "a, \"quoted\" note".into()]);
        let html = t.to_html("/x?csv=t");
        assert!(
            html.contains("<td data-col=\"partner\">&lt;b&gt;us-dod&lt;/b&gt;</td>"),
            "{html}"
        );
        assert_eq!(
            t.to_csv(),
            "partner,note\r\n<b>us-dod</b>,\"a, \"\"quoted\"\" note\"\r\n"
        );
    }

    #[test]
    fn a_chart_draws_a_band_per_non_zero_value_and_a_legend() {
        let labels = vec!["Apr".to_string(), "May".to_string()];
        let svg = bar_chart("c", &labels, &[("a", vec![2, 0]), ("b", vec![1, 3])]);
        assert_eq!(svg.matches("class=\"bar\"").count(), 3);
        assert!(svg.contains(">May</text>") && svg.contains(">b</text>"));
    }
}
