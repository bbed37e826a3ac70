//! Windows judged at chosen instants (the clock is a parameter), across both DST changes
//! of 2026 in New York (8 March 02:00 -> 03:00, 1 November 02:00 -> 01:00).

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn window(kind: WindowKind, schedule: &str, duration: &str, tz: &str) -> Window {
    let d = crate::syntax::parse_duration(duration).unwrap();
    Window::new(kind, schedule, d, tz).unwrap()
}

fn allow(schedule: &str, duration: &str, tz: &str) -> Window {
    window(WindowKind::Allow, schedule, duration, tz)
}

fn deny(schedule: &str, duration: &str, tz: &str) -> Window {
    window(WindowKind::Deny, schedule, duration, tz)
}

fn opening(w: &Windows, at: &str) -> Option<DateTime<Utc>> {
    match w.verdict(utc(at)) {
        Verdict::Open => Some(utc(at)),
        Verdict::Closed { opens, .. } => opens,
    }
}

#[test]
fn no_windows_is_any_time() {
    let w = Windows::default();
    assert_eq!(w.verdict(utc("2026-11-28T12:00:00Z")), Verdict::Open);
}

#[test]
fn weekday_evenings_in_new_york() {
    let w = Windows(vec![allow("0 22 * * 1-5", "4h", "America/New_York")]);
    // Monday 23 November, 21:00 EST: closed until 22:00 EST (03:00Z).
    let Verdict::Closed { reason, opens } = w.verdict(utc("2026-11-24T02:00:00Z")) else {
        panic!("open before the window");
    };
    assert_eq!(reason, "outside every allow window");
    assert_eq!(opens, Some(utc("2026-11-24T03:00:00Z")));
    assert_eq!(w.verdict(utc("2026-11-24T03:30:00Z")), Verdict::Open);
    // Friday 22:00 runs into Saturday 02:00 local; Saturday evening itself is closed
    // until Monday 22:00.
    assert_eq!(w.verdict(utc("2026-11-28T06:59:59Z")), Verdict::Open);
    assert_eq!(
        opening(&w, "2026-11-28T07:00:00Z"),
        Some(utc("2026-12-01T03:00:00Z"))
    );
}

#[test]
fn spring_forward_keeps_local_start_and_elapsed_length() {
    let w = Windows(vec![allow("0 22 * * *", "4h", "America/New_York")]);
    // Saturday 7 March 22:00 EST = 03:00Z; four elapsed hours later it is 07:00Z
    // (03:00 EDT on the wall clock, which skipped an hour).
    let started = w.0[0].containing(utc("2026-03-08T04:00:00Z"));
    assert_eq!(
        started,
        Some((utc("2026-03-08T03:00:00Z"), utc("2026-03-08T07:00:00Z")))
    );
    // The next start is 22:00 EDT, one hour earlier in UTC than the day before.
    assert_eq!(
        opening(&w, "2026-03-08T12:00:00Z"),
        Some(utc("2026-03-09T02:00:00Z"))
    );
}

#[test]
fn fall_back_window_lasts_its_elapsed_duration() {
    let w = Windows(vec![allow("0 22 * * *", "4h", "America/New_York")]);
    // Saturday 31 October 22:00 EDT = 02:00Z; the clocks go back at 06:00Z, so the window
    // ends at 06:00Z, 01:00 EST on the wall clock.
    assert_eq!(
        w.0[0].containing(utc("2026-11-01T05:59:00Z")),
        Some((utc("2026-11-01T02:00:00Z"), utc("2026-11-01T06:00:00Z")))
    );
    assert!(matches!(
        w.verdict(utc("2026-11-01T06:00:00Z")),
        Verdict::Closed { .. }
    ));
    // Sunday 22:00 EST = 03:00Z Monday.
    assert_eq!(
        opening(&w, "2026-11-01T06:00:00Z"),
        Some(utc("2026-11-02T03:00:00Z"))
    );
}

#[test]
fn start_in_the_skipped_hour_still_opens_that_day() {
    // 02:30 does not exist in New York on 8 March 2026; the window must not be lost for
    // the day (nor held for a year): it opens within the day, after the jump.
    let w = Windows(vec![allow("30 2 * * *", "1h", "America/New_York")]);
    let at = opening(&w, "2026-03-08T06:00:00Z").unwrap();
    assert!(
        at >= utc("2026-03-08T07:00:00Z") && at <= utc("2026-03-08T08:00:00Z"),
        "opened at {at}"
    );
}

#[test]
fn start_in_the_repeated_hour_opens_once_at_the_first() {
    // 01:30 happens twice in New York on 1 November 2026 (05:30Z EDT, 06:30Z EST).
    let w = Windows(vec![allow("30 1 * * *", "10m", "America/New_York")]);
    assert_eq!(
        opening(&w, "2026-11-01T05:00:00Z"),
        Some(utc("2026-11-01T05:30:00Z"))
    );
}

#[test]
fn one_minute_window() {
    let w = Windows(vec![allow("0 3 * * *", "1m", "UTC")]);
    assert_eq!(w.verdict(utc("2026-06-10T03:00:00Z")), Verdict::Open);
    assert_eq!(w.verdict(utc("2026-06-10T03:00:59Z")), Verdict::Open);
    assert_eq!(
        opening(&w, "2026-06-10T03:01:00Z"),
        Some(utc("2026-06-11T03:00:00Z"))
    );
    assert_eq!(
        opening(&w, "2026-06-10T02:59:59Z"),
        Some(utc("2026-06-10T03:00:00Z"))
    );
}

#[test]
fn a_commit_during_a_deny_window_starts_when_it_ends() {
    // Always allowed, but frozen from Friday 22:00 for 60 h (to Monday 10:00). A release
    // committed on Saturday waits for the freeze to end, not for a later allow start
    // (Argo CD's issue #21692 was the opposite).
    let w = Windows(vec![
        allow("0 0 * * *", "24h", "Europe/Berlin"),
        deny("0 22 * * 5", "60h", "Europe/Berlin"),
    ]);
    let Verdict::Closed { reason, opens } = w.verdict(utc("2026-06-13T10:00:00Z")) else {
        panic!("open during the freeze");
    };
    assert_eq!(
        reason,
        "inside the deny window 0 22 * * 5 for 2d12h (Europe/Berlin)"
    );
    // Monday 15 June 10:00 CEST = 08:00Z.
    assert_eq!(opens, Some(utc("2026-06-15T08:00:00Z")));
}

#[test]
fn deny_wins_inside_an_allow_window() {
    let w = Windows(vec![
        allow("0 22 * * *", "4h", "UTC"),
        deny("0 23 * * *", "1h", "UTC"),
    ]);
    assert_eq!(w.verdict(utc("2026-06-10T22:30:00Z")), Verdict::Open);
    assert_eq!(
        opening(&w, "2026-06-10T23:30:00Z"),
        Some(utc("2026-06-11T00:00:00Z"))
    );
}

#[test]
fn windows_that_never_open_say_so() {
    let w = Windows(vec![
        allow("0 22 * * *", "1h", "UTC"),
        deny("0 0 * * *", "24h", "UTC"),
    ]);
    assert_eq!(opening(&w, "2026-06-10T12:00:00Z"), None);
}

#[test]
fn bad_schedules_and_zones() {
    assert!(matches!(
        parse_schedule("0 22 * *"),
        Err(WindowError::Schedule(_))
    ));
    assert!(matches!(
        parse_schedule("0 0 22 * * *"),
        Err(WindowError::Schedule(_))
    ));
    assert!(matches!(
        parse_schedule("0 0 30 2 *"),
        Err(WindowError::NeverMatches)
    ));
    assert!(parse_schedule("0 22 * * MON-FRI").is_ok());
    assert_eq!(parse_time_zone("Mars/Olympus"), Err(WindowError::TimeZone));
    assert!(parse_time_zone("America/New_York").is_ok());
}
