//! Calendar arithmetic for timestamp literals and CF time units
//! (`days since 1950-01-01 00:00:00 UTC`), proleptic Gregorian, UTC.

use array_format::TimestampNs;

const NS_PER_SEC: i128 = 1_000_000_000;
const NS_PER_DAY: i128 = 86_400 * NS_PER_SEC;

/// Days since 1970-01-01 of a proleptic Gregorian date (Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// A calendar interval: a year, a month or a day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Calendar {
    /// The year.
    pub year: i32,
    /// The month (1–12), if the interval is a month or a day.
    pub month: Option<u32>,
    /// The day of the month, if the interval is a day.
    pub day: Option<u32>,
}

impl Calendar {
    /// Checks the fields; `None` if they name no interval.
    pub(crate) fn new(year: i32, month: Option<u32>, day: Option<u32>) -> Option<Calendar> {
        if !(1..=9999).contains(&year) || (day.is_some() && month.is_none()) {
            return None;
        }
        if let Some(m) = month {
            if !(1..=12).contains(&m) {
                return None;
            }
            if let Some(d) = day {
                if d == 0 || d > days_in_month(i64::from(year), m) {
                    return None;
                }
            }
        }
        Some(Calendar { year, month, day })
    }

    /// The half-open interval `[start, end)` in nanoseconds since the epoch.
    pub(crate) fn bounds(self) -> (TimestampNs, TimestampNs) {
        let y = i64::from(self.year);
        let (start, end) = match (self.month, self.day) {
            (None, _) => (days_from_civil(y, 1, 1), days_from_civil(y + 1, 1, 1)),
            (Some(m), None) => {
                let next = if m == 12 {
                    days_from_civil(y + 1, 1, 1)
                } else {
                    days_from_civil(y, m + 1, 1)
                };
                (days_from_civil(y, m, 1), next)
            }
            (Some(m), Some(d)) => {
                let s = days_from_civil(y, m, d);
                (s, s + 1)
            }
        };
        let ns = |days: i64| TimestampNs((i128::from(days) * NS_PER_DAY) as i64);
        (ns(start), ns(end))
    }

    /// Parses `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    pub(crate) fn parse(s: &str) -> Option<Calendar> {
        let mut parts = s.split('-');
        let year = fixed_digits(parts.next()?, 4)? as i32;
        let mut field = || -> Option<Option<u32>> {
            match parts.next() {
                None => Some(None),
                Some(p) => fixed_digits(p, 2).map(|v| Some(v as u32)),
            }
        };
        let month = field()?;
        let day = field()?;
        if parts.next().is_some() {
            return None;
        }
        Calendar::new(year, month, day)
    }
}

impl std::fmt::Display for Calendar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}", self.year)?;
        if let Some(m) = self.month {
            write!(f, "-{m:02}")?;
        }
        if let Some(d) = self.day {
            write!(f, "-{d:02}")?;
        }
        Ok(())
    }
}

fn fixed_digits(s: &str, n: usize) -> Option<i64> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an ISO-8601 instant: `YYYY-MM-DD`, optionally followed by `T` (or,
/// in CF units, a space) and `hh:mm[:ss[.fraction]]`, optionally followed by
/// `Z`, `UTC` or an offset `±hh:mm`. No zone means UTC.
#[allow(clippy::many_single_char_names)] // y, m, d, h, s as in ISO-8601
pub(crate) fn parse_instant(s: &str, allow_space: bool) -> Option<TimestampNs> {
    let s = s.trim();
    let date_len = s.find(['T', ' ']).unwrap_or(s.len());
    let (date, rest) = s.split_at(date_len);
    let cal = Calendar::parse(date)?;
    let (Some(m), Some(d)) = (cal.month, cal.day) else {
        return None;
    };
    let days = days_from_civil(i64::from(cal.year), m, d);
    let mut ns = i128::from(days) * NS_PER_DAY;
    let mut rest = rest;
    if let Some(r) = rest.strip_prefix('T').or_else(|| {
        if allow_space {
            rest.strip_prefix(' ')
        } else {
            None
        }
    }) {
        let r = r.trim_start();
        // Time of day: up to the zone designator.
        let end = r.find(['Z', '+', '-', ' ', 'U']).unwrap_or(r.len());
        let (tod, zone) = r.split_at(end);
        ns += parse_time_of_day(tod)?;
        rest = zone;
    }
    let rest = rest.trim();
    let offset_ns: i128 = match rest {
        "" | "Z" | "UTC" | "utc" => 0,
        z => {
            let (sign, hm) = match z.as_bytes().first() {
                Some(b'+') => (1, &z[1..]),
                Some(b'-') => (-1, &z[1..]),
                _ => return None,
            };
            let (h, m) = hm.split_once(':').unwrap_or((hm, "00"));
            let (h, m) = (fixed_digits(h, 2)?, fixed_digits(m, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * i128::from(h * 3600 + m * 60) * NS_PER_SEC
        }
    };
    i64::try_from(ns - offset_ns).ok().map(TimestampNs)
}

fn parse_time_of_day(s: &str) -> Option<i128> {
    let mut parts = s.split(':');
    let h = fixed_digits(parts.next()?, 2)?;
    let m = fixed_digits(parts.next()?, 2)?;
    let (sec, frac) = match parts.next() {
        None => (0, 0),
        Some(p) => {
            let (whole, frac) = p.split_once('.').unwrap_or((p, ""));
            let sec = fixed_digits(whole, 2)?;
            if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let frac_ns = if frac.is_empty() {
                0
            } else {
                frac.parse::<i128>().ok()? * 10i128.pow(9 - frac.len() as u32)
            };
            (sec, frac_ns)
        }
    };
    if parts.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    Some(i128::from(h * 3600 + m * 60 + sec) * NS_PER_SEC + frac)
}

/// Formats an instant the way the parser reads it back (seconds always,
/// fraction only when non-zero).
pub(crate) fn format_instant(t: TimestampNs) -> String {
    let s = t.to_string(); // 1970-01-01T00:00:00.000000000Z
    if let Some(whole) = s.strip_suffix(".000000000Z") {
        format!("{whole}Z")
    } else {
        let trimmed = s.trim_end_matches('Z').trim_end_matches('0');
        format!("{trimmed}Z")
    }
}

/// CF time units: `<unit> since <reference instant>`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CfUnits {
    unit_ns: i128,
    reference_ns: i128,
}

impl CfUnits {
    /// Parses a `units` attribute such as `days since 1950-01-01 00:00:00 UTC`.
    pub(crate) fn parse(units: &str) -> Option<CfUnits> {
        let (unit, since) = units.trim().split_once(" since ")?;
        let unit_ns = match unit.trim().to_ascii_lowercase().as_str() {
            "days" | "day" | "d" => NS_PER_DAY,
            "hours" | "hour" | "hr" | "h" => 3600 * NS_PER_SEC,
            "minutes" | "minute" | "min" => 60 * NS_PER_SEC,
            "seconds" | "second" | "sec" | "s" => NS_PER_SEC,
            "milliseconds" | "millisecond" | "ms" => 1_000_000,
            "microseconds" | "microsecond" | "us" => 1_000,
            _ => return None,
        };
        let since = since.trim();
        // A bare date (`1950-01-01`) is midnight UTC.
        let reference = parse_instant(since, true)?;
        Some(CfUnits {
            unit_ns,
            reference_ns: i128::from(reference.0),
        })
    }

    /// The instant in these units: exact when it is a whole number of units
    /// from the reference (an integer), else the nearest `f64`.
    pub(crate) fn convert(self, t: TimestampNs) -> super::value::Num {
        let diff = i128::from(t.0) - self.reference_ns;
        if diff % self.unit_ns == 0 {
            super::value::Num::I(diff / self.unit_ns)
        } else {
            let whole = diff.div_euclid(self.unit_ns);
            let rem = diff.rem_euclid(self.unit_ns);
            super::value::Num::F(whole as f64 + rem as f64 / self.unit_ns as f64)
        }
    }
}

/// True when a `calendar` attribute names the (proleptic) Gregorian calendar
/// that the conversion assumes.
pub(crate) fn gregorian(calendar: &str) -> bool {
    matches!(
        calendar.to_ascii_lowercase().as_str(),
        "standard" | "gregorian" | "proleptic_gregorian"
    )
}

#[cfg(test)]
mod tests {
    use super::super::value::Num;
    use super::*;

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1950, 1, 1), -7305);
    }

    #[test]
    fn calendar_bounds_are_half_open() {
        let (s, e) = Calendar::parse("2020").unwrap().bounds();
        assert_eq!(format_instant(s), "2020-01-01T00:00:00Z");
        assert_eq!(format_instant(e), "2021-01-01T00:00:00Z");
        let (s, e) = Calendar::parse("2020-02").unwrap().bounds();
        assert_eq!(e.0 - s.0, 29 * 86_400 * 1_000_000_000);
        let (_, e) = Calendar::parse("2020-12-31").unwrap().bounds();
        assert_eq!(format_instant(e), "2021-01-01T00:00:00Z");
        assert!(Calendar::parse("2021-02-29").is_none());
        assert!(Calendar::parse("2020-13").is_none());
        assert!(Calendar::parse("20201").is_none());
    }

    #[test]
    fn instants_parse_with_zones_and_fractions() {
        let t = parse_instant("2020-01-01T12:30:00.5+01:00", false).unwrap();
        assert_eq!(format_instant(t), "2020-01-01T11:30:00.5Z");
        assert_eq!(
            parse_instant("2020-01-01", false),
            parse_instant("2020-01-01T00:00Z", false)
        );
        assert!(parse_instant("2020-01-01 00:00", false).is_none());
        assert!(parse_instant("2020-01-01T25:00", false).is_none());
    }

    #[test]
    fn cf_units_convert_exactly_on_whole_units() {
        let u = CfUnits::parse("days since 1950-01-01 00:00:00 UTC").unwrap();
        let (s, e) = Calendar::parse("2020").unwrap().bounds();
        assert_eq!(u.convert(s), Num::I(25_567));
        assert_eq!(u.convert(e), Num::I(25_933));
        let noon = parse_instant("1950-01-02T12:00:00Z", false).unwrap();
        assert_eq!(u.convert(noon), Num::F(1.5));
        assert!(CfUnits::parse("degree_Celsius").is_none());
        assert!(CfUnits::parse("fortnights since 1950-01-01").is_none());
        let s = CfUnits::parse("seconds since 1970-01-01T00:00:00Z").unwrap();
        assert_eq!(s.convert(TimestampNs(3_000_000_000)), Num::I(3));
    }
}
