//! The one grammar for times on sluice's command lines and forms. A date-time is ISO 8601
//! (`2026-05-01T10:00:00`, with `.sss`, `Z` or `±hh:mm` optional; no zone means UTC), as
//! `kafka-consumer-groups --to-datetime` takes it. A duration is ISO 8601 (`PT2H`, `P1DT30M`,
//! `PT0.5S`, as `--by-duration` takes it) or the short form (`24h`, `90m`, `1h 30m`). An instant
//! is either: a date-time, or a duration counted back from now.

use std::time::Duration;

/// Milliseconds since the epoch of an ISO 8601 date and time.
pub fn parse_datetime(text: &str) -> Result<i64, String> {
    let s = text.trim();
    let bad = || format!("'{text}' is not an ISO 8601 date and time (e.g. 2026-05-01T10:00:00Z)");
    let (local, offset_min) = split_zone(s).ok_or_else(bad)?;
    let at = humantime::parse_rfc3339_weak(local).map_err(|_| bad())?;
    let ms = at.duration_since(std::time::UNIX_EPOCH).map_err(|_| bad())?.as_millis() as i64;
    Ok(ms - offset_min * 60_000)
}

/// The date and time without its zone, and the zone's offset east of UTC in minutes.
fn split_zone(s: &str) -> Option<(&str, i64)> {
    if let Some(local) = s.strip_suffix('Z').or_else(|| s.strip_suffix('z')) {
        return Some((local, 0));
    }
    // A zone is `+hh:mm`, `-hh:mm` or `+hhmm` after the time (past the date's own dashes).
    let t = s.find(['T', 't', ' '])?;
    let Some(sign_at) = s[t..].rfind(['+', '-']).map(|i| i + t) else { return Some((s, 0)) };
    let (local, zone) = s.split_at(sign_at);
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let hours: i64 = digits[..2].parse().ok()?;
    let minutes: i64 = digits[2..].parse().ok()?;
    Some((local, sign * (hours * 60 + minutes)))
}

/// A duration: ISO 8601 in weeks, days, hours, minutes and seconds (`P1W`, `P2D`, `PT2H30M`,
/// `PT1.5S`; years and months are refused, their length depends on the date), or the short form
/// (`24h`, `90m`, `2d 3h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim().to_ascii_uppercase();
    if !s.starts_with('P') {
        return humantime::parse_duration(text.trim()).map_err(|e| {
            format!("'{text}' is not a duration (e.g. 24h, 90m, PT2H, P1DT30M): {e}")
        });
    }
    iso_duration(text, &s)
}

/// An instant as milliseconds since the epoch: a date-time, or a duration back from `now_ms`.
pub fn parse_instant(text: &str, now_ms: i64) -> Result<i64, String> {
    if let Ok(d) = parse_duration(text) {
        return Ok(now_ms.saturating_sub(d.as_millis().min(i64::MAX as u128) as i64));
    }
    parse_datetime(text).map_err(|_| {
        format!("'{text}' is neither a duration (24h, PT2H) nor a date-time (2026-05-01T10:00:00Z)")
    })
}

fn iso_duration(text: &str, s: &str) -> Result<Duration, String> {
    let bad =
        |why: &str| format!("'{text}' is not an ISO 8601 duration (e.g. PT2H, P1DT30M): {why}");
    let body = s.strip_prefix('P').ok_or_else(|| bad("it starts with P"))?;
    let (date, time) = match body.split_once('T') {
        Some((_, "")) => return Err(bad("nothing after T")),
        Some((d, t)) => (d, t),
        None => (body, ""),
    };
    if date.is_empty() && time.is_empty() {
        return Err(bad("no amount"));
    }
    let mut seconds = 0f64;
    for (part, units) in [
        (date, &[('W', 604_800.0), ('D', 86_400.0)][..]),
        (time, &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)][..]),
    ] {
        let mut rest = part;
        let mut allowed = units;
        while !rest.is_empty() {
            let end = rest
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .ok_or_else(|| bad("a number without a unit"))?;
            let (number, tail) = rest.split_at(end);
            let unit = tail.chars().next().expect("a unit follows");
            let Some(i) = allowed.iter().position(|(u, _)| *u == unit) else {
                let why = if unit == 'Y' || (unit == 'M' && units.len() == 2) {
                    "years and months have no fixed length; use days".to_owned()
                } else {
                    format!("unit '{unit}' is out of place")
                };
                return Err(bad(&why));
            };
            let n: f64 = number.parse().map_err(|_| bad(&format!("'{number}' is not a number")))?;
            seconds += n * allowed[i].1;
            allowed = &allowed[i + 1..];
            rest = &tail[1..];
        }
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| bad("too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_with_and_without_zones() {
        let utc = parse_datetime("2026-05-01T10:00:00").unwrap();
        assert_eq!(parse_datetime("2026-05-01T10:00:00Z").unwrap(), utc);
        assert_eq!(parse_datetime("2026-05-01T10:00:00.000").unwrap(), utc);
        assert_eq!(parse_datetime("2026-05-01T12:00:00+02:00").unwrap(), utc);
        assert_eq!(parse_datetime("2026-05-01T05:30:00-0430").unwrap(), utc);
        assert_eq!(utc, 1_777_629_600_000);
        assert!(parse_datetime("yesterday").is_err());
        assert!(parse_datetime("2026-05-01T10:00:00+2").is_err());
    }

    #[test]
    fn durations_in_the_iso_form() {
        assert_eq!(parse_duration("PT2H").unwrap(), Duration::from_secs(7_200));
        assert_eq!(parse_duration("P1DT30M").unwrap(), Duration::from_secs(86_400 + 1_800));
        assert_eq!(parse_duration("P1W").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("pt1.5s").unwrap(), Duration::from_millis(1_500));
        let months = parse_duration("P1M").unwrap_err();
        assert!(months.contains("years and months"), "{months}");
        assert!(parse_duration("PT").is_err());
        assert!(parse_duration("P2h").is_err() && parse_duration("P").is_err());
        assert!(parse_duration("PT5M2H").unwrap_err().contains("out of place"));
    }

    #[test]
    fn durations_too_long_for_a_duration_are_an_error() {
        for text in
            ["P99999999999999999999W", "PT30000000000000000000S", &format!("P{}D", "9".repeat(400))]
        {
            let e = parse_duration(text).unwrap_err();
            assert!(e.contains("too long"), "{text}: {e}");
        }
        assert_eq!(parse_duration("P1000000W").unwrap(), Duration::from_secs(604_800_000_000));
    }

    #[test]
    fn the_short_form_and_instants_share_the_grammar() {
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5_400));
        assert!(parse_duration("yesterday").unwrap_err().contains("not a duration"));
        assert_eq!(parse_instant("2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(parse_instant("PT2H", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(parse_instant("1970-01-01T00:00:01Z", 0), Ok(1000));
        assert_eq!(parse_instant("1970-01-01T02:00:01+02:00", 0), Ok(1000));
        assert!(parse_instant("yesterday", 0).unwrap_err().contains("neither"));
    }
}
