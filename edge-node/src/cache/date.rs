//! HTTP-date parsing (RFC 9110 section 5.6.7): the three formats to a `SystemTime`; and the
//! IMF-fixdate form of a time, for stored dates kept as seconds (`headers.rs`). Pure.
//!
//! Choices the RFC leaves open: the day name is checked for spelling but not against the date
//! (a recipient is not required to); a leap second (`:60`) rolls over to the next minute, as
//! POSIX time does (`23:59:60` is the same instant as `00:00:00` the next day); dates before the
//! Unix epoch are `None` (callers treat an unusable date as invalid, i.e. already expired).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY_NAMES: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const DAY_NAMES_LONG: &[u8] = b"Monday Tuesday Wednesday Thursday Friday Saturday Sunday";
const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// A UTC date (not yet checked to exist) and time of day. Field order makes `Ord` chronological.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    /// Seconds into the day, 0..=86_400 (the last only for a leap second at 23:59:60).
    time: i64,
}

/// Parses an HTTP-date (RFC 9110 section 5.6.7): IMF-fixdate strictly, and the two obsolete
/// formats recipients must accept (rfc850-date and asctime-date). `None` for anything else.
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    parse_http_date_at(s, SystemTime::now())
}

/// [`parse_http_date`] with the current time given: `now` only decides the century of an
/// rfc850-date's two-digit year.
fn parse_http_date_at(s: &str, now: SystemTime) -> Option<SystemTime> {
    let b = s.as_bytes();
    let civil = match b.get(3)? {
        b',' => imf_fixdate(b)?,
        b' ' => asctime_date(b)?,
        _ => rfc850_date(b, now)?,
    };
    to_system_time(civil)
}

/// The IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) of `secs` after the epoch. A hit formats
/// the dates it serves from the store with it, so it writes digits in pairs.
pub(crate) fn fmt_imf_fixdate(secs: u32) -> [u8; 29] {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839404142434445464748495051525354555657585960616263\
        6465666768697071727374757677787980818283848586878889909192939495969798\
        99";
    let pair = |out: &mut [u8], n: i64| {
        let i = n.rem_euclid(100) as usize * 2;
        out.copy_from_slice(&PAIRS[i..i + 2]);
    };
    let c = from_unix(u64::from(secs));
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    // 1970-01-01 was a Thursday, DAY_NAMES[3].
    out[..3].copy_from_slice(DAY_NAMES[((secs / 86_400 + 3) % 7) as usize]);
    pair(&mut out[5..7], c.day);
    out[8..11].copy_from_slice(MONTHS[(c.month - 1) as usize]);
    pair(&mut out[12..14], c.year / 100);
    pair(&mut out[14..16], c.year);
    pair(&mut out[17..19], c.time / 3_600);
    pair(&mut out[20..22], c.time / 60 % 60);
    pair(&mut out[23..25], c.time % 60);
    out
}

/// The seconds after the epoch of `b` when it is exactly the IMF-fixdate
/// [`fmt_imf_fixdate`] makes of them (right day name, no leap second, before 2106), so that
/// the seconds stand for the very same bytes; `None` for anything else.
pub(crate) fn canonical_imf_secs(b: &[u8]) -> Option<u32> {
    let t = to_system_time(imf_fixdate(b)?)?;
    let secs = u32::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()?;
    (fmt_imf_fixdate(secs) == b).then_some(secs)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(b: &[u8]) -> Option<Civil> {
    if !shaped(b, b"___, ## ___ #### ##:##:## GMT") || !DAY_NAMES.contains(&&b[..3]) {
        return None;
    }
    civil(&b[12..16], &b[8..11], &b[5..7], &b[17..25])
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850_date(b: &[u8], now: SystemTime) -> Option<Civil> {
    let (name, rest) = b.split_at(b.iter().position(|&c| c == b',')?);
    if !shaped(rest, b", ##-___-## ##:##:## GMT")
        || !DAY_NAMES_LONG.split(|&c| c == b' ').any(|d| d == name)
    {
        return None;
    }
    let mut c = civil(&rest[9..11], &rest[5..8], &rest[2..4], &rest[12..20])?;
    c.year = two_digit_year(c, now);
    Some(c)
}

/// `Sun Nov  6 08:49:37 1994` (or `Sun Nov 06 08:49:37 1994`)
fn asctime_date(b: &[u8]) -> Option<Civil> {
    if !shaped(b, b"___ ___ _# ##:##:## ####") || !DAY_NAMES.contains(&&b[..3]) {
        return None;
    }
    let day = if b[8] == b' ' { &b[9..10] } else { &b[8..10] };
    civil(&b[20..24], &b[4..7], day, &b[11..19])
}

/// Whether `b` has the shape of `template`: `#` is an ASCII digit, `_` any byte (the caller
/// checks it), anything else itself.
fn shaped(b: &[u8], template: &[u8]) -> bool {
    b.len() == template.len()
        && b.iter().zip(template).all(|(&c, &t)| match t {
            b'#' => c.is_ascii_digit(),
            b'_' => true,
            _ => c == t,
        })
}

/// The fields, the time (`HH:MM:SS`) range-checked, the day not yet.
fn civil(year: &[u8], month_name: &[u8], day: &[u8], time: &[u8]) -> Option<Civil> {
    let field = |at: usize| digits(&time[at..at + 2]);
    let (h, m, s) = (field(0)?, field(3)?, field(6)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(Civil {
        year: digits(year)?,
        month: month(month_name)?,
        day: digits(day)?,
        time: h * 3_600 + m * 60 + s,
    })
}

/// RFC 9110: a two-digit year that would put the timestamp more than 50 years after `now` means
/// the most recent past year with those digits. So: the latest year ending in `c.year` whose
/// timestamp is at most 50 years (same calendar moment, 50 years on) after `now`.
fn two_digit_year(c: Civil, now: SystemTime) -> i64 {
    let now = from_unix(now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
    let mut limit = now;
    limit.year += 50;
    let mut year = now.year - now.year.rem_euclid(100) + 100 + c.year;
    while (Civil { year, ..c }) > limit {
        year -= 100;
    }
    year
}

/// ASCII digits only (no sign, no space), at least one.
fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, &c| n * 10 + i64::from(c - b'0')))
}

/// Month number, 1-12.
fn month(b: &[u8]) -> Option<i64> {
    (1..).zip(MONTHS).find_map(|(n, m)| (m == b).then_some(n))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Converts; `None` for a day the month does not have or a date before the epoch.
fn to_system_time(c: Civil) -> Option<SystemTime> {
    if c.year < 1970 || !(1..=days_in_month(c.year, c.month)).contains(&c.day) {
        return None;
    }
    let secs = days_from_civil(c.year, c.month, c.day) * 86_400 + c.time;
    UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let (era, yoe) = (y.div_euclid(400), y.rem_euclid(400));
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC date and time `secs` after the epoch (H. Hinnant's `civil_from_days`).
fn from_unix(secs: u64) -> Civil {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    let (z, time) = (secs.div_euclid(86_400) + 719_468, secs.rem_euclid(86_400));
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day: doy - (153 * mp + 2) / 5 + 1,
        time,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn secs(s: &str, now: SystemTime) -> Option<u64> {
        parse_http_date_at(s, now).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs())
    }

    /// 2025-06-15 12:00:00 UTC.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_749_988_800)
    }

    #[test]
    fn rfc9110_examples_edges_and_malformed() {
        let cases = [
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(784_111_777)),
            ("Sun Nov  6 08:49:37 1994", Some(784_111_777)),
            ("Sun Nov 06 08:49:37 1994", Some(784_111_777)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            ("Sun, 15 Jun 2025 12:00:00 GMT", Some(1_749_988_800)),
            ("Thu, 29 Feb 1996 08:49:37 GMT", Some(825_583_777)),
            ("Tue, 29 Feb 2000 00:00:00 GMT", Some(951_782_400)),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Some(253_402_300_799)),
            // leap second rolls over: same instant as 2017-01-01 00:00:00
            ("Sat, 31 Dec 2016 23:59:60 GMT", Some(1_483_228_800)),
            // the day name is not checked against the date
            ("Mon, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            // before the epoch
            ("Wed, 31 Dec 1969 23:59:59 GMT", None),
            ("Mon, 01 Jan 1900 00:00:00 GMT", None),
            // malformed
            ("Sun,  06 Nov 1994 08:49:37 GMT", None),
            ("Sun 06 Nov 1994 08:49:37 GMT", None),
            ("sun, 06 Nov 1994 08:49:37 GMT", None),
            ("Sunday, 06 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06-Nov-94 08:49:37 GMT", None),
            ("06 Nov 1994 08:49:37 GMT", None),
            ("Sun, 6 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 08:49:37 gmt", None),
            ("Sun, 06 Nov 1994 08:49:37 UTC", None),
            ("Sun, 06 Nov 1994 8:49:37 GMT", None),
            ("Sun, 31 Nov 1994 08:49:37 GMT", None),
            ("Sun, 29 Feb 1995 08:49:37 GMT", None),
            ("Sun, 29 Feb 1900 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 24:00:00 GMT", None),
            ("Sun, 06 Nov 1994 08:49:61 GMT", None),
            ("Sun, +6 Nov 1994 08:49:37 GMT", None),
            ("Sun, 06 Nov 1994 08:49:37 GMT x", None),
            (" Sun, 06 Nov 1994 08:49:37 GMT", None),
            ("Sün, 06 Nov 1994 08:49:37 GMT", None),
            ("Sunday, 06-Nov-94 08:49:37 UTC", None),
            ("Sunday, 06-Nov-1994 08:49:37 GMT", None),
            ("Sun Nov 6 08:49:37 1994", None),
            ("Sun Nov   6 08:49:37 1994", None),
            ("Sun Nov \t6 08:49:37 1994", None),
            ("Sun Nov  6 08:49:37 1994 GMT", None),
            ("", None),
            ("0", None),
            ("-1", None),
        ];
        for (s, want) in cases {
            assert_eq!(secs(s, now()), want, "{s:?}");
        }
    }

    #[test]
    fn imf_fixdate_formats_and_only_canonical_dates_round_trip() {
        // Against httpdate's formatter: the epoch, leap days, the end of the u32 range, and
        // a spread of seconds that reaches every weekday, month and time field.
        let mut at: Vec<u32> = vec![0, 59, 86_399, 951_782_400, 825_583_777, u32::MAX];
        at.extend((0..2_000u32).map(|i| i.wrapping_mul(2_654_435_761)));
        for secs in at {
            let want = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs.into()));
            let got = fmt_imf_fixdate(secs);
            assert_eq!(std::str::from_utf8(&got).unwrap(), want, "{secs}");
            assert_eq!(canonical_imf_secs(&got), Some(secs), "{want}");
        }
        for not_canonical in [
            "Mon, 06 Nov 1994 08:49:37 GMT", // wrong day name
            "Sat, 31 Dec 2016 23:59:60 GMT", // leap second
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 07 Feb 2106 06:28:16 GMT", // past u32
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT ",
            "",
        ] {
            assert_eq!(
                canonical_imf_secs(not_canonical.as_bytes()),
                None,
                "{not_canonical}"
            );
        }
        assert_eq!(
            canonical_imf_secs(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
    }

    /// The year `Monday, {date_time} GMT` (an rfc850-date) resolves to at `now`.
    fn year_at(date_time: &str, now: SystemTime) -> Option<i64> {
        let t = parse_http_date_at(&format!("Monday, {date_time} GMT"), now)?;
        Some(from_unix(t.duration_since(UNIX_EPOCH).unwrap().as_secs()).year)
    }

    #[test]
    fn two_digit_year_within_50_years_of_now() {
        let in_2070 = parse_http_date_at("Wed, 01 Jan 2070 00:00:00 GMT", UNIX_EPOCH).unwrap();
        let in_1994 = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let cases = [
            ("06-Nov-94 08:49:37", now(), Some(1994)),
            ("15-Jun-75 12:00:00", now(), Some(2075)), // exactly 50 years on
            ("15-Jun-75 12:00:01", now(), Some(1975)), // a second more
            ("01-Jan-25 00:00:00", now(), Some(2025)),
            ("29-Feb-00 00:00:00", now(), Some(2000)),
            ("01-Jan-70 00:00:00", now(), Some(2070)),
            ("01-Jan-20 00:00:00", in_2070, Some(2120)),
            ("01-Jan-21 00:00:00", in_2070, Some(2021)),
            ("01-Jan-69 00:00:00", in_2070, Some(2069)),
            ("29-Feb-00 00:00:00", in_2070, None), // 2100 is not a leap year
            ("01-Jan-44 00:00:00", in_1994, Some(2044)),
            ("01-Jan-69 00:00:00", in_1994, None), // 1969: before the epoch
        ];
        for (s, now, want) in cases {
            assert_eq!(year_at(s, now), want, "{s:?}");
        }
        // the public function uses the real clock
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
    }
}
