//! The wall clock as the gateway stores it: [`now_ms`], Unix milliseconds, the one reading of
//! time every module writing timestamps to the database or comparing them uses.

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
