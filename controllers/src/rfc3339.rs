//! RFC 3339 timestamps for the status document, serialized without `time`'s general
//! formatter: a fleet's status holds ~70,000 timestamps (four conditions and a probe per
//! service), and the general path is most of the cost of `/api/v1/status`. The output is
//! byte for byte what `time::serde::rfc3339` writes for a UTC time (tested); reading
//! goes through `time` unchanged.

use serde::{Deserializer, Serializer};
use time::{OffsetDateTime, UtcOffset};

/// Appends `value` as `width` decimal digits (zero-padded).
fn digits(buf: &mut [u8; 40], len: &mut usize, width: usize, mut value: u32) {
    for i in (0..width).rev() {
        buf[*len + i] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    *len += width;
}

fn byte(buf: &mut [u8; 40], len: &mut usize, b: u8) {
    buf[*len] = b;
    *len += 1;
}

/// `2026-11-22T10:31:10.313195Z`: no fraction when whole seconds, trailing zeros dropped.
fn write(at: OffsetDateTime, buf: &mut [u8; 40]) -> &str {
    let at = at.to_offset(UtcOffset::UTC);
    let mut len = 0;
    digits(buf, &mut len, 4, u32::try_from(at.year()).unwrap_or(0));
    for (sep, width, value) in [
        (b'-', 2, u32::from(u8::from(at.month()))),
        (b'-', 2, u32::from(at.day())),
        (b'T', 2, u32::from(at.hour())),
        (b':', 2, u32::from(at.minute())),
        (b':', 2, u32::from(at.second())),
    ] {
        byte(buf, &mut len, sep);
        digits(buf, &mut len, width, value);
    }
    let mut nanos = at.nanosecond();
    if nanos > 0 {
        let mut width = 9;
        while nanos % 10 == 0 {
            nanos /= 10;
            width -= 1;
        }
        byte(buf, &mut len, b'.');
        digits(buf, &mut len, width, nanos);
    }
    byte(buf, &mut len, b'Z');
    // Only ASCII digits and separators were written.
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

/// Years outside 0..=9999 are not RFC 3339; `time` refuses them too, so does this.
fn check<S: Serializer>(at: &OffsetDateTime) -> Result<(), S::Error> {
    if (0..=9999).contains(&at.to_offset(UtcOffset::UTC).year()) {
        Ok(())
    } else {
        Err(serde::ser::Error::custom(
            "year outside RFC 3339's 0000..9999",
        ))
    }
}

pub(crate) fn serialize<S: Serializer>(at: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    check::<S>(at)?;
    s.serialize_str(write(*at, &mut [0; 40]))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
    time::serde::rfc3339::deserialize(d)
}

pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        at: &Option<OffsetDateTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => {
                check::<S>(at)?;
                s.serialize_some(write(*at, &mut [0; 40]))
            }
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<OffsetDateTime>, D::Error> {
        time::serde::rfc3339::option::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use time::format_description::well_known::Rfc3339;

    use super::*;

    #[test]
    fn writes_what_time_writes() {
        let now = OffsetDateTime::now_utc();
        for at in [
            now,
            now.replace_nanosecond(0).unwrap(),
            now.replace_nanosecond(120_000_000).unwrap(),
            now.replace_nanosecond(1).unwrap(),
            OffsetDateTime::UNIX_EPOCH,
            OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap(),
            now.to_offset(UtcOffset::from_hms(2, 0, 0).unwrap()),
        ] {
            let utc = at.to_offset(UtcOffset::UTC);
            assert_eq!(write(at, &mut [0; 40]), utc.format(&Rfc3339).unwrap());
        }
    }
}
