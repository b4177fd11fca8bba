//! Window durations in Kuadrant's grammar: `^([0-9]{1,5}(h|m|s|ms)){1,4}$`, e.g. `1m`,
//! `1h30m`, `500ms`.

/// Parses a window into milliseconds, naming what is wrong on failure.
pub fn parse_window_ms(s: &str) -> Result<u64, String> {
    let bad = |why: &str| {
        format!("invalid window `{s}`: {why} (expected e.g. `1s`, `1m`, `1h30m`, `500ms`)")
    };
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut parts = 0;
    let mut total: u64 = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() || digits.len() > 5 {
            return Err(bad("each part needs 1 to 5 digits"));
        }
        let n: u64 = digits.parse().map_err(|_| bad("number"))?;
        let unit_ms = if s[i..].starts_with("ms") {
            i += 2;
            1
        } else {
            let unit = bytes.get(i).copied();
            i += 1;
            match unit {
                Some(b'h') => 3_600_000,
                Some(b'm') => 60_000,
                Some(b's') => 1_000,
                _ => return Err(bad("unit must be h, m, s or ms")),
            }
        };
        parts += 1;
        if parts > 4 {
            return Err(bad("at most 4 parts"));
        }
        total += n * unit_ms;
    }
    if parts == 0 {
        return Err(bad("empty"));
    }
    if total == 0 {
        return Err(bad("must be longer than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kuadrant_windows() {
        assert_eq!(parse_window_ms("1s"), Ok(1000));
        assert_eq!(parse_window_ms("1m"), Ok(60_000));
        assert_eq!(parse_window_ms("1h30m"), Ok(5_400_000));
        assert_eq!(parse_window_ms("500ms"), Ok(500));
        assert_eq!(parse_window_ms("1h1m1s1ms"), Ok(3_661_001));
        assert_eq!(parse_window_ms("99999s"), Ok(99_999_000));
    }

    #[test]
    fn rejects_bad_windows() {
        for bad in [
            "",
            "1",
            "s",
            "1d",
            "100000s",
            "1h1m1s1ms1ms",
            "0s",
            "-1s",
            "1 s",
            "1S",
            "1m ",
        ] {
            assert!(parse_window_ms(bad).is_err(), "{bad:?} accepted");
        }
    }
}
