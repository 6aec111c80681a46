//! Times as RocketMQ's tools write them, in UTC: `yyyy-MM-dd#HH:mm:ss:SSS` (what
//! `resetOffsetByTime -s` takes) and `yyyy-MM-dd HH:mm:ss,SSS` (what the tools print).

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses a time a tool was given: epoch milliseconds, or `yyyy-MM-dd#HH:mm:ss:SSS` (UTC).
pub fn parse_time_ms(s: &str) -> Option<i64> {
    if let Ok(ms) = s.trim().parse::<i64>() {
        return Some(ms);
    }
    let (date, time) = s.trim().split_once('#')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec, ms) = (t.next()??, t.next()??, t.next()??, t.next().unwrap_or(Some(0))?);
    let valid = (1..=12).contains(&m)
        && (1..=31).contains(&day)
        && (0..24).contains(&h)
        && (0..60).contains(&min)
        && (0..60).contains(&sec)
        && (0..1000).contains(&ms);
    let days = days_from_civil(y, m, day);
    // Reject dates that do not exist (31 February rolls into March otherwise).
    (valid && civil_from_days(days) == (y, m, day)).then(|| ((days * 24 + h) * 60 + min) * 60_000 + sec * 1000 + ms)
}

/// Formats epoch milliseconds as `yyyy-MM-dd HH:mm:ss,SSS` (UTC).
pub fn format_ms(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    let (h, min, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02},{milli:03}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocketmq_times_parse_and_print() {
        assert_eq!(parse_time_ms("1700000000000"), Some(1_700_000_000_000));
        let ms = parse_time_ms("2023-11-14#22:13:20:000").unwrap();
        assert_eq!(ms, 1_700_000_000_000);
        assert_eq!(format_ms(ms), "2023-11-14 22:13:20,000");
        assert_eq!(format_ms(0), "1970-01-01 00:00:00,000");
        assert_eq!(parse_time_ms("2024-02-29#00:00:00:001").map(format_ms).as_deref(), Some("2024-02-29 00:00:00,001"));
        for bad in
            ["2023-02-29#00:00:00:000", "2023-13-01#00:00:00:000", "2023-01-01#24:00:00:000", "yesterday", "2023-01-01"]
        {
            assert_eq!(parse_time_ms(bad), None, "{bad}");
        }
    }
}
