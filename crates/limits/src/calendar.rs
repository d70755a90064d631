//! UTC calendar windows for budgets: days, weeks starting Monday, and months.
//!
//! Pure integer arithmetic on days since the epoch (proleptic Gregorian calendar), so finding a
//! request's window costs a few nanoseconds and needs no time-zone database.

use crate::rules::Period;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The budget window of `period` containing `now_micros`: `(start, end)` in microseconds since
/// the epoch, start inclusive, end exclusive, both at 00:00 UTC.
pub fn budget_window(period: Period, now_micros: i64) -> (i64, i64) {
    let day = now_micros.div_euclid(MICROS_PER_DAY);
    let (start_day, end_day) = match period {
        Period::Daily => (day, day + 1),
        Period::Weekly => {
            // 1970-01-01 was a Thursday: index 3 counting from Monday.
            let monday = day - (day + 3).rem_euclid(7);
            (monday, monday + 7)
        }
        Period::Monthly => {
            let (year, month, _) = civil_from_days(day);
            let (next_year, next_month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
            (
                days_from_civil(year, month, 1),
                days_from_civil(next_year, next_month, 1),
            )
        }
    };
    (start_day * MICROS_PER_DAY, end_day * MICROS_PER_DAY)
}

/// Microseconds since the epoch of a UTC date and time (no validation: out-of-range fields
/// roll over arithmetically).
pub(crate) fn utc_micros(year: i32, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> i64 {
    let days = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
    let seconds =
        days * 86_400 + i64::from(hour) * 3_600 + i64::from(minute) * 60 + i64::from(second);
    seconds * 1_000_000
}

/// Days since 1970-01-01 of a civil date. Years are counted from March so that the leap day
/// falls at the end of the counting year; 400-year eras repeat exactly (146 097 days).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date `(year, month, day)` of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_over_four_centuries() {
        for days in -146_097..146_097 * 2 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
