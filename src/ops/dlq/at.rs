//! The one notation for a record's position, `P:O` (partition:offset, as `--at` takes it): what
//! every dead-letter command, report and console page writes, and the one parser for it.

use std::fmt;

/// A record's position in a topic: its partition and offset. Displays as `P:O`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct At {
    pub partition: i32,
    pub offset: i64,
}

impl At {
    pub fn new(partition: i32, offset: i64) -> Self {
        Self { partition, offset }
    }

    /// A position as an operator writes it, `P:O`; anything else is refused with what is
    /// expected: `expected PARTITION:OFFSET such as 2:0; got 0@2`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "expected PARTITION:OFFSET such as 2:0; got {}",
                super::read::clip(&text.escape_debug().to_string(), 40)
            )
        };
        let (p, o) = text.trim().split_once(':').ok_or_else(bad)?;
        let partition: i32 = p.parse().map_err(|_| bad())?;
        let offset: i64 = o.parse().map_err(|_| bad())?;
        if partition < 0 || offset < 0 {
            return Err(bad());
        }
        Ok(Self { partition, offset })
    }

    /// As the filters and reports keep it.
    pub fn pair(self) -> (i32, i64) {
        (self.partition, self.offset)
    }
}

impl From<(i32, i64)> for At {
    fn from((partition, offset): (i32, i64)) -> Self {
        Self { partition, offset }
    }
}

/// Written as people read it, `P:O`.
impl serde::Serialize for At {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

/// `partition:offset` of a pair, for a `format!`.
pub fn at(partition: i32, offset: i64) -> At {
    At::new(partition, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_written_and_read_as_partition_colon_offset() {
        assert_eq!(At::new(2, 0).to_string(), "2:0");
        assert_eq!(At::parse("2:0"), Ok(At::new(2, 0)));
        assert_eq!(At::parse(" 12:345 "), Ok(At::new(12, 345)));
    }

    /// Issue 24 #5: the other notations once written are refused, saying what is expected.
    #[test]
    fn other_notations_are_refused_with_what_is_expected() {
        for other in ["0@2", "2/0", "2", "a:b", "-1:0", "2:-1", "2:0:1", ""] {
            let e = At::parse(other).expect_err(other);
            assert!(e.starts_with("expected PARTITION:OFFSET such as 2:0; got "), "{e}");
            assert!(e.ends_with(other), "{e}");
        }
        let long = "9".repeat(500);
        assert!(At::parse(&long).expect_err("long").len() < 120, "a long text is cut");
    }
}
