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
}
