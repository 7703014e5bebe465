//! Budget windows in UTC: their ids and when the next one starts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::BudgetWindow;

/// The id of the window `at` falls in, and when the next window starts.
pub fn window_of(window: BudgetWindow, at: SystemTime) -> (String, SystemTime) {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let day = (secs / 86_400) as i64;
    match window {
        BudgetWindow::Day => {
            let (y, m, d) = civil(day);
            (format!("{y:04}-{m:02}-{d:02}"), from_days(day + 1))
        }
        BudgetWindow::Month => {
            let (y, m, _) = civil(day);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (format!("{y:04}-{m:02}"), from_days(days_from_civil(ny, nm, 1)))
        }
        BudgetWindow::Every(period) => {
            let p = period.as_millis().max(1);
            let ms = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            let n = ms / p;
            let next = UNIX_EPOCH + Duration::from_millis(((n + 1) * p) as u64);
            (format!("every-{p}ms-{n}"), next)
        }
    }
}

/// When the window named `id` (as [`window_of`] names it) ends; `None` for an id of no known
/// form. A function of the id alone, so every replica computes the same instant.
pub fn window_end(id: &str) -> Option<SystemTime> {
    if let Some(rest) = id.strip_prefix("every-") {
        let (period, n) = rest.split_once("ms-")?;
        let (period, n): (u64, u64) = (period.parse().ok()?, n.parse().ok()?);
        let end = n.checked_add(1)?.checked_mul(period)?;
        return UNIX_EPOCH.checked_add(Duration::from_millis(end));
    }
    let parts: Vec<&str> = id.split('-').collect();
    let (y, m): (i64, u32) = match parts.as_slice() {
        [y, m, ..] if y.len() == 4 && m.len() == 2 => (number(y)?, number(m)?),
        _ => return None,
    };
    if !(1..=12).contains(&m) {
        return None;
    }
    match parts.as_slice() {
        [_, _] => {
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            Some(from_days(days_from_civil(ny, nm, 1)))
        }
        [_, _, d] if d.len() == 2 => {
            let d: u32 = number(d)?;
            (1..=31).contains(&d).then(|| from_days(days_from_civil(y, m, d) + 1))
        }
        _ => None,
    }
}

/// A run of ASCII digits as a number (no sign, no spaces).
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse().ok()).flatten()
}

fn from_days(days: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs((days.max(0) as u64) * 86_400)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Hinnant's algorithm).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        humantime::parse_rfc3339(text).expect("time")
    }

    #[test]
    fn days_and_months_turn_at_utc_midnight() {
        let (id, next) = window_of(BudgetWindow::Day, at("2026-12-31T23:59:59Z"));
        assert_eq!(id, "2026-12-31");
        assert_eq!(next, at("2027-01-01T00:00:00Z"));
        let (id, next) = window_of(BudgetWindow::Month, at("2028-02-29T12:00:00Z"));
        assert_eq!(id, "2028-02");
        assert_eq!(next, at("2028-03-01T00:00:00Z"));
        let (id, next) = window_of(BudgetWindow::Month, at("2026-12-05T00:00:00Z"));
        assert_eq!((id.as_str(), next), ("2026-12", at("2027-01-01T00:00:00Z")));
    }

    #[test]
    fn fixed_periods_align_to_the_epoch() {
        let w = BudgetWindow::Every(Duration::from_secs(30));
        let (a, next) = window_of(w, at("2026-01-01T00:00:10Z"));
        let (b, _) = window_of(w, at("2026-01-01T00:00:29Z"));
        let (c, _) = window_of(w, at("2026-01-01T00:00:30Z"));
        assert_eq!(a, b);
        assert_ne!(b, c);
        assert_eq!(next, at("2026-01-01T00:00:30Z"));
    }

    #[test]
    fn a_window_id_alone_says_when_the_window_ends() {
        let windows = [
            BudgetWindow::Day,
            BudgetWindow::Month,
            BudgetWindow::Every(Duration::from_secs(8)),
            BudgetWindow::Every(Duration::from_millis(1500)),
        ];
        let instants = ["2026-12-31T23:59:59Z", "2028-02-29T12:00:00Z", "2026-03-01T00:00:00Z"];
        for w in windows {
            for t in instants {
                let (id, next) = window_of(w, at(t));
                assert_eq!(window_end(&id), Some(next), "{id}");
            }
        }
        for bad in
            ["", "2026", "2026-13", "2026-1-01", "2026-02-32", "every-8000ms", "every-xms-1", "t"]
        {
            assert_eq!(window_end(bad), None, "{bad}");
        }
    }
}
