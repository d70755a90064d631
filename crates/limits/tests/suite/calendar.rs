//! Budget windows agree with an independent calendar implementation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use portcullis_limits::{Period, budget_window};

fn micros_of(date: Date) -> i64 {
    date.to_zoned_datetime(TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_microsecond()
}

fn expected(period: Period, now: i64) -> (i64, i64) {
    let date = Timestamp::from_microsecond(now)
        .unwrap()
        .to_zoned_datetime(TimeZone::UTC)
        .date();
    let (start, end) = match period {
        Period::Daily => (date, date.tomorrow().unwrap()),
        Period::Weekly => {
            let back = i64::from(date.weekday().to_monday_zero_offset());
            let mut monday = date;
            for _ in 0..back {
                monday = monday.yesterday().unwrap();
            }
            let mut next = monday;
            for _ in 0..7 {
                next = next.tomorrow().unwrap();
            }
            (monday, next)
        }
        Period::Monthly => {
            let first = date.first_of_month();
            (first, date.last_of_month().tomorrow().unwrap())
        }
    };
    (micros_of(start), micros_of(end))
}

#[test]
fn windows_match_jiff_from_1900_to_2200() {
    // A deterministic walk with an odd stride, so every time of day and weekday is visited.
    let start = micros_of(Date::new(1900, 1, 1).unwrap());
    let end = micros_of(Date::new(2200, 1, 1).unwrap());
    let stride = 37_919_000_003_i64;
    let mut now = start;
    while now < end {
        for period in [Period::Daily, Period::Weekly, Period::Monthly] {
            assert_eq!(
                budget_window(period, now),
                expected(period, now),
                "{period:?} at {now}"
            );
        }
        now += stride;
    }
}

#[test]
fn edges_belong_to_the_window_they_open() {
    let march_first_2024 = micros_of(Date::new(2024, 3, 1).unwrap());
    let (start, _) = budget_window(Period::Monthly, march_first_2024);
    assert_eq!(start, march_first_2024);
    let (_, end) = budget_window(Period::Monthly, march_first_2024 - 1);
    assert_eq!(end, march_first_2024);
    assert_eq!(
        budget_window(Period::Monthly, march_first_2024 - 1).0,
        micros_of(Date::new(2024, 2, 1).unwrap())
    );
    // 2024-12-30 is a Monday; the week crosses the year.
    let monday = micros_of(Date::new(2024, 12, 30).unwrap());
    let in_new_year = micros_of(Date::new(2025, 1, 2).unwrap()) + 5;
    assert_eq!(
        budget_window(Period::Weekly, in_new_year),
        (monday, monday + 7 * 86_400_000_000)
    );
}
