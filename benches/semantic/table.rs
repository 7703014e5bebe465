//! A table printed twice: aligned for the terminal, and as Markdown for docs/BENCHMARKS.md.

pub struct Table {
    title: String,
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, head: &[&str]) -> Self {
        Self {
            title: title.to_owned(),
            head: head.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.head.len(), "a cell per column");
        self.rows.push(cells);
    }

    /// Columns padded to their widest cell; the first left-aligned, the rest right-aligned.
    pub fn text(&self) -> String {
        let widths: Vec<usize> = (0..self.head.len())
            .map(|c| {
                let cells = self.rows.iter().map(|r| &r[c]).chain([&self.head[c]]);
                cells.map(|s| s.chars().count()).max().unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(c, (s, w))| if c == 0 { format!("{s:<w$}") } else { format!("{s:>w$}") })
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        let mut out = format!("{}\n{}\n", self.title, line(&self.head));
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("{}\n\n| {} |\n|---|", self.title, self.head.join(" | "));
        out.push_str(&"---:|".repeat(self.head.len() - 1));
        out.push('\n');
        for r in &self.rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out
    }
}

/// `12 (3.4%)`.
pub fn count(k: u32, n: u32) -> String {
    format!("{k} ({})", pct(k, n))
}

pub fn pct(k: u32, n: u32) -> String {
    if n == 0 {
        return "—".into();
    }
    format!("{:.1}%", 100.0 * f64::from(k) / f64::from(n))
}

/// `b` as a multiple of the baseline `a`: `0.97×`, or `—` when the baseline is zero.
pub fn ratio(b: u32, a: u32) -> String {
    if a == 0 {
        return "—".into();
    }
    format!("{:.2}×", f64::from(b) / f64::from(a))
}
