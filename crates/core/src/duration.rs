//! Durations as the configuration file, the admin API and request headers write them: a bare
//! number of seconds (`90`, `1.5`), or one or more amounts with a unit — `ms`, `s`, `m`, `h`,
//! `d`, `w` — such as `250ms`, `30s`, `15m`, `1h30m`, `1.5s`. One parser for every crate;
//! crates with narrower rules (a unit required, whole seconds) check those on top.

use std::time::Duration;

/// Why a text is not a duration. The message quotes the text (configuration, never secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not of the accepted shape.
    #[error("`{0}` is not a duration (e.g. 90, 250ms, 30s, 15m, 12h, 1d, 1h30m)")]
    Invalid(String),
    /// Too long to represent.
    #[error("`{0}` is out of range")]
    OutOfRange(String),
}

/// Parses a duration (see the module documentation).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let invalid = || DurationError::Invalid(text.to_owned());
    let out_of_range = || DurationError::OutOfRange(text.to_owned());
    if text.is_empty() {
        return Err(invalid());
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let seconds: f64 = text.parse().map_err(|_| invalid())?;
        return Duration::try_from_secs_f64(seconds).map_err(|_| out_of_range());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let amount: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3_600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            _ => return Err(invalid()),
        };
        rest = rest[unit_len..].trim_start();
        let part =
            Duration::try_from_secs_f64(amount * seconds_per_unit).map_err(|_| out_of_range())?;
        total = total.checked_add(part).ok_or_else(out_of_range)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_shapes() {
        let ms = |s| parse_duration(s).map(|d| d.as_millis());
        assert_eq!(ms("90"), Ok(90_000));
        assert_eq!(ms("1.5"), Ok(1_500));
        assert_eq!(ms("250ms"), Ok(250));
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("1.5s"), Ok(1_500));
        assert_eq!(ms("15m"), Ok(900_000));
        assert_eq!(ms("12h"), Ok(43_200_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("2w"), Ok(1_209_600_000));
        assert_eq!(ms("1h30m"), Ok(5_400_000));
        assert_eq!(ms(" 5 m "), Ok(300_000));
    }

    #[test]
    fn refused_shapes() {
        for bad in [
            "",
            "s",
            "m5",
            "5 minutes",
            "-1s",
            "1e999s",
            "1.2.3s",
            "5x",
            "1h-",
            ".",
        ] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_duration("99999999999999999999999w"),
            Err(DurationError::OutOfRange(_))
        ));
    }
}
