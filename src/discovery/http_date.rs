//! HTTP dates (RFC 9110 section 5.6.7), for the `Expires` header of well-known responses.
//!
//! Recipients must accept all three historical formats; they share the same tokens in the
//! same relative order (day before year), so one lenient tokenizer reads them all:
//! `Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT`, `Sun Nov  6 08:49:37 1994`.

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Seconds since the Unix epoch, or `None` when the value is not an HTTP date.
pub fn parse(value: &str) -> Option<u64> {
    let tokens = value
        .split(|c: char| c.is_whitespace() || c == ',' || c == '-')
        .filter(|t| !t.is_empty());
    let (mut month, mut time, mut numbers) = (None, None, Vec::new());
    for token in tokens {
        if token.contains(':') {
            time = Some(parse_time(token)?);
        } else if token.bytes().all(|b| b.is_ascii_digit()) {
            numbers.push(token);
        } else if let Some(m) = MONTHS.iter().position(|m| token.eq_ignore_ascii_case(m)) {
            month = Some(m as u64 + 1);
        }
    }
    let [day, year] = numbers[..] else {
        return None;
    };
    let day: u64 = day.parse().ok().filter(|d| (1..=31).contains(d))?;
    let year: u64 = match year.len() {
        4 => year.parse().ok()?,
        // RFC 850's two-digit years: pick the century that is not far in the future.
        2 => year
            .parse::<u64>()
            .ok()
            .map(|y| if y < 70 { 2000 + y } else { 1900 + y })?,
        _ => return None,
    };
    if year < 1970 {
        return None;
    }
    Some(days_from_civil(year, month?, day) * 86_400 + time?)
}

fn parse_time(token: &str) -> Option<u64> {
    let mut parts = token.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() || h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(h * 3600 + m * 60 + s)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm), for
/// years from 1970 on.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse;

    // 1994-11-06T08:49:37Z, RFC 9110's example.
    const EXAMPLE: u64 = 784_111_777;

    #[test]
    fn all_three_formats() {
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(EXAMPLE));
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT"), Some(EXAMPLE));
        assert_eq!(parse("Sun Nov  6 08:49:37 1994"), Some(EXAMPLE));
    }

    #[test]
    fn leap_years_and_epoch() {
        assert_eq!(parse("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse("Thu, 29 Feb 2024 12:00:00 GMT"), Some(1_709_208_000));
    }

    #[test]
    fn garbage_is_not_a_date() {
        for bad in [
            "0",
            "-1",
            "",
            "tomorrow",
            "Sun, 06 Nov 1994 25:00:00 GMT",
            "Sun, 06 1994",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
