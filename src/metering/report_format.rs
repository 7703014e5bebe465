//! A cost report as text: an aligned table for people (with what the latency columns mean and
//! which window was read) and CSV for spreadsheets. JSON is [`Row`]'s own serialization.

use super::report::{usd, GroupBy, Row};
use super::report_window::Window;

/// Says what the latency columns are, under every table.
pub const LATENCY_NOTE: &str = "latency: nearest-rank p50/p95/p99 over each group's model calls \
                                (failed ones included); cache hits are not model calls and are \
                                left out";

/// The columns after the group-by keys.
const COLUMNS: [&str; 11] = [
    "REQUESTS",
    "FAILED",
    "CACHED",
    "IN TOKENS",
    "OUT TOKENS",
    "USD",
    "P50 MS",
    "P95 MS",
    "P99 MS",
    "FIRST SEEN",
    "LAST SEEN",
];

use crate::time::rfc3339_short as rfc3339;

fn headers(by: &[GroupBy]) -> Vec<String> {
    let keys = by.iter().map(|b| b.name().to_uppercase());
    keys.chain(COLUMNS.iter().map(|c| (*c).to_owned())).collect()
}

/// A row's cells; `none` stands for a latency the group does not have.
fn cells(r: &Row, none: &str) -> Vec<String> {
    let ms = |v: Option<u64>| v.map_or_else(|| none.to_owned(), |v| v.to_string());
    let keys = r.key.0.iter().map(|(_, v)| v.clone());
    keys.chain([
        r.requests.to_string(),
        r.failed.to_string(),
        r.cache_hits.to_string(),
        r.input_tokens.to_string(),
        r.output_tokens.to_string(),
        usd(r.cost_micro_usd),
        ms(r.latency_p50_ms),
        ms(r.latency_p95_ms),
        ms(r.latency_p99_ms),
        rfc3339(r.first_ms),
        rfc3339(r.last_ms),
    ])
    .collect()
}

/// The window as the table's footer says it.
fn describe(w: &Window) -> String {
    match (w.since_ms(), w.until_ms()) {
        (None, None) => "window: the whole metering topic".to_owned(),
        (Some(s), None) => format!("window: since {} (inclusive)", rfc3339(s)),
        (None, Some(u)) => format!("window: until {} (exclusive)", rfc3339(u)),
        (Some(s), Some(u)) => {
            format!("window: {} (inclusive) to {} (exclusive)", rfc3339(s), rfc3339(u))
        }
    }
}

/// The table: keys and times left-aligned, numbers right-aligned, each column as wide as its
/// widest cell; then the latency note, the window, and the event count and total.
pub fn table(rows: &[Row], by: &[GroupBy], window: &Window, events: usize) -> String {
    let lines: Vec<Vec<String>> =
        std::iter::once(headers(by)).chain(rows.iter().map(|r| cells(r, "-"))).collect();
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0))
        .collect();
    let left = |i: usize| i < by.len() || i + 2 >= columns;
    let mut out = String::new();
    for line in &lines {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(&widths).enumerate() {
            if left(i) {
                text.push_str(&format!("{cell:<w$}  "));
            } else {
                text.push_str(&format!("{cell:>w$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    let total: u64 = rows.iter().map(|r| r.cost_micro_usd).sum();
    out.push_str(&format!("{LATENCY_NOTE}\n{}\n", describe(window)));
    out.push_str(&format!(
        "{events} events in the window after removing duplicates; total {} USD\n",
        usd(total)
    ));
    out
}

fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
}

/// CSV with a header: one column per key (named by it), then the totals; a latency of a group
/// without model calls is empty.
pub fn csv(rows: &[Row], by: &[GroupBy]) -> String {
    let header: Vec<String> =
        headers(by).iter().map(|h| h.to_lowercase().replace(' ', "_")).collect();
    let mut out = header.join(",") + "\n";
    for r in rows {
        let line: Vec<String> = cells(r, "").iter().map(|c| csv_field(c)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metering::report::GroupKey;

    fn row(template: &str, model: &str, p95: Option<u64>) -> Row {
        Row {
            key: GroupKey(vec![
                (GroupBy::Template, template.into()),
                (GroupBy::Model, model.into()),
            ]),
            requests: 12,
            cost_micro_usd: 1_250,
            latency_p50_ms: p95.map(|p| p / 2),
            latency_p95_ms: p95,
            latency_p99_ms: p95,
            first_ms: 1_795_702_980_000,
            last_ms: 1_795_702_980_500,
            ..Row::default()
        }
    }

    #[test]
    fn times_in_seconds_unless_the_milliseconds_matter() {
        assert_eq!(rfc3339(1_795_702_980_000), "2026-11-26T14:23:00Z");
        assert_eq!(rfc3339(1_795_702_980_500), "2026-11-26T14:23:00.500Z");
    }

    #[test]
    fn the_table_has_a_column_per_key_aligned_and_says_what_it_counted() {
        let by = [GroupBy::Template, GroupBy::Model];
        let rows = [row("answer@1", "sim/sim-large", Some(840)), row("answer@2", "m/s", None)];
        let window = Window::new(Some(1_795_702_980_000), Some(1_795_703_040_000)).unwrap();
        let text = table(&rows, &by, &window, 30);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("TEMPLATE  MODEL          REQUESTS"), "{text}");
        assert!(lines[1].starts_with("answer@1  sim/sim-large        12"), "{text}");
        assert!(lines[2].starts_with("answer@2  m/s                  12"), "{text}");
        // Numbers end where their header ends; a group without model calls shows "-".
        let p95_end = lines[0].find("P95 MS").unwrap() + "P95 MS".len();
        assert_eq!(&lines[1][p95_end - 3..p95_end], "840", "{text}");
        assert_eq!(&lines[2][p95_end - 1..p95_end], "-", "{text}");
        assert!(lines[1].ends_with("2026-11-26T14:23:00Z  2026-11-26T14:23:00.500Z"), "{text}");
        assert_eq!(lines[3], LATENCY_NOTE);
        assert_eq!(
            lines[4],
            "window: 2026-11-26T14:23:00Z (inclusive) to 2026-11-26T14:24:00Z (exclusive)"
        );
        assert_eq!(
            lines[5],
            "30 events in the window after removing duplicates; total 0.002500 USD"
        );
        let open = table(&[], &[GroupBy::Stage], &Window::default(), 0);
        assert!(open.starts_with("STAGE  REQUESTS"), "{open}");
        assert!(open.contains("\nwindow: the whole metering topic\n"), "{open}");
    }

    #[test]
    fn csv_names_the_key_columns_and_leaves_a_missing_latency_empty() {
        let by = [GroupBy::Template, GroupBy::Model];
        let text = csv(&[row("a,b", "m/x", None), row("c@1", "m/y", Some(9))], &by);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "template,model,requests,failed,cached,in_tokens,out_tokens,usd,p50_ms,p95_ms,\
             p99_ms,first_seen,last_seen"
        );
        assert!(lines[1].starts_with(r#""a,b",m/x,12,0,0,0,0,0.001250,,,,2026-"#), "{text}");
        assert!(lines[2].starts_with("c@1,m/y,12,0,0,0,0,0.001250,4,9,9,2026-"), "{text}");
    }
}
