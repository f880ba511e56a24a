//! The suite's output: one table of rows, each a figure beside the floor or
//! baseline measured in the same run, their ratio, and the target it is held
//! to; printed for a person, written as JSON and as BENCHMARKS.md's section.

use std::fmt::Write as _;

use serde::Serialize;

/// One figure of one benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Which benchmark (e.g. "latency").
    pub bench: &'static str,
    /// What is measured (e.g. "QUIC, publish -> message, p50").
    pub what: String,
    /// The figure, with its unit.
    pub value: String,
    /// The floor or baseline beside it, with its unit, or empty.
    pub baseline: String,
    /// `value / baseline` when both are numbers of the same kind.
    pub ratio: Option<f64>,
    pub target: Option<Target>,
}

/// A target from the issue and whether this run meets it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub text: String,
    pub met: bool,
}

impl Row {
    pub fn new(bench: &'static str, what: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            bench,
            what: what.into(),
            value: value.into(),
            baseline: String::new(),
            ratio: None,
            target: None,
        }
    }

    /// Sets the baseline (text) and the ratio of the figure to it.
    pub fn against(mut self, baseline: impl Into<String>, ratio: f64) -> Self {
        self.baseline = baseline.into();
        self.ratio = ratio.is_finite().then_some(ratio).filter(|r| *r > 0.0);
        self
    }

    pub fn baseline(mut self, baseline: impl Into<String>) -> Self {
        self.baseline = baseline.into();
        self
    }

    pub fn target(mut self, text: impl Into<String>, met: bool) -> Self {
        self.target = Some(Target {
            text: text.into(),
            met,
        });
        self
    }
}

/// Milliseconds with a precision that suits their size.
pub fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.3} ms")
    } else {
        format!("{v:.1} ms")
    }
}

/// Microseconds.
pub fn us(v: f64) -> String {
    format!("{v:.1} µs")
}

/// A rate per second, whole.
pub fn per_s(v: f64, unit: &str) -> String {
    format!("{v:.0} {unit}/s")
}

pub fn mib(v: f64) -> String {
    format!("{v:.1} MiB")
}

fn ratio_text(r: Option<f64>) -> String {
    r.map_or_else(String::new, |r| {
        if r >= 10.0 {
            format!("{r:.0}×")
        } else {
            format!("{r:.2}×")
        }
    })
}

fn target_text(t: Option<&Target>) -> String {
    t.map_or_else(String::new, |t| {
        format!("{} {}", if t.met { "met:" } else { "NOT met:" }, t.text)
    })
}

/// The table for a terminal.
pub fn text_table(rows: &[Row]) -> String {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.bench.to_owned(),
                r.what.clone(),
                r.value.clone(),
                r.baseline.clone(),
                ratio_text(r.ratio),
                target_text(r.target.as_ref()),
            ]
        })
        .collect();
    let header = [
        "bench",
        "what",
        "figure",
        "floor / baseline",
        "ratio",
        "target",
    ];
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &[String]| {
        let mut s = String::new();
        for (c, w) in cols.iter().zip(widths) {
            let pad = w.saturating_sub(c.chars().count());
            let _ = write!(s, "{c}{}  ", " ".repeat(pad));
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_owned));
    for row in &cells {
        line(row);
    }
    out
}

/// The table as Markdown.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| bench | what | figure | floor / baseline (same run) | ratio | target |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.bench,
            r.what,
            r.value,
            r.baseline,
            ratio_text(r.ratio),
            target_text(r.target.as_ref()),
        );
    }
    out
}

/// Replaces the text between the bench markers of `document` (or appends
/// the marked section when it has none).
pub fn splice(document: &str, section: &str) -> String {
    const BEGIN: &str = "<!-- bench:begin (written by scripts/bench; edit outside the markers) -->";
    const END: &str = "<!-- bench:end -->";
    let block = format!("{BEGIN}\n{section}\n{END}");
    match (document.find(BEGIN), document.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{block}{}", &document[..b], &document[e + END.len()..])
        }
        _ => format!("{}\n\n{block}\n", document.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splicing_replaces_only_the_marked_section() {
        let first = splice("# Benchmarks\n\nprose\n", "figures 1");
        assert!(first.starts_with("# Benchmarks\n\nprose\n"));
        let second = splice(&format!("{first}\nmore prose\n"), "figures 2");
        assert!(second.contains("figures 2") && !second.contains("figures 1"));
        assert!(second.contains("more prose") && second.starts_with("# Benchmarks"));
    }

    #[test]
    fn a_missed_target_says_so() {
        let row = Row::new("x", "y", "3 ms").target("≤ 2 ms", false);
        assert!(text_table(&[row]).contains("NOT met: ≤ 2 ms"));
    }
}
