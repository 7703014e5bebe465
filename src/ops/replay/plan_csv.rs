//! A replay plan as CSV, the format of `kafka-consumer-groups --reset-offsets --export` and
//! `--from-file`: one `topic,partition,offset` line per partition, no header. Reading collects
//! every bad line with its number instead of stopping at the first.

use std::fmt;

/// One line: where a partition of a topic should resume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLine {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Every bad line of a plan file, numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvErrors(pub Vec<(usize, String)>);

impl fmt::Display for CsvErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bad line(s) in the plan file (want topic,partition,offset):", self.0.len())?;
        for (line, error) in &self.0 {
            write!(f, "\n  line {line}: {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CsvErrors {}

/// The plan as CSV lines, in the order given.
pub fn write(lines: &[PlanLine]) -> String {
    lines.iter().map(|l| format!("{},{},{}\n", l.topic, l.partition, l.offset)).collect()
}

/// Parses a plan file. Blank lines and lines starting with `#` are skipped; a partition listed
/// twice is an error, as is a negative partition or offset.
pub fn parse(text: &str) -> Result<Vec<PlanLine>, CsvErrors> {
    let mut out: Vec<PlanLine> = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(l) if out.iter().any(|o| o.topic == l.topic && o.partition == l.partition) => errors
                .push((i + 1, format!("partition {}:{} is listed twice", l.topic, l.partition))),
            Ok(l) => out.push(l),
            Err(e) => errors.push((i + 1, e)),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(CsvErrors(errors))
    }
}

fn parse_line(line: &str) -> Result<PlanLine, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [topic, partition, offset] = fields[..] else {
        return Err(format!("{} fields, want 3: '{line}'", fields.len()));
    };
    if topic.is_empty() {
        return Err("empty topic".into());
    }
    let partition: i32 = partition
        .parse()
        .ok()
        .filter(|p| *p >= 0)
        .ok_or_else(|| format!("partition '{partition}' is not a number ≥ 0"))?;
    let offset: i64 = offset
        .parse()
        .ok()
        .filter(|o| *o >= 0)
        .ok_or_else(|| format!("offset '{offset}' is not a number ≥ 0"))?;
    Ok(PlanLine { topic: topic.to_owned(), partition, offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_plan_parses_back_to_itself() {
        let lines = vec![
            PlanLine { topic: "p.docs".into(), partition: 0, offset: 12 },
            PlanLine { topic: "p.docs".into(), partition: 3, offset: 0 },
        ];
        assert_eq!(parse(&write(&lines)).unwrap(), lines);
    }

    #[test]
    fn every_bad_line_is_listed_with_its_number() {
        let text =
            "# exported\np.docs,0,5\np.docs,x,5\n\np.docs,1\np.docs,2,-1\np.docs,0,7\n,1,1\n";
        let errors = parse(text).unwrap_err();
        let lines: Vec<usize> = errors.0.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, vec![3, 5, 6, 7, 8]);
        let shown = errors.to_string();
        assert!(shown.contains("line 3: partition 'x' is not a number"), "{shown}");
        assert!(shown.contains("line 5: 2 fields, want 3"), "{shown}");
        assert!(shown.contains("line 6: offset '-1'"), "{shown}");
        assert!(shown.contains("line 7: partition p.docs:0 is listed twice"), "{shown}");
        assert!(shown.contains("line 8: empty topic"), "{shown}");
    }
}
