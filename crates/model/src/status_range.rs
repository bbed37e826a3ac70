//! Accepted HTTP status sets such as `"200-302"` or `"200-299,301"`.

use std::fmt;

/// A union of inclusive status-code ranges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusRanges(Vec<(u16, u16)>);

/// Why a status-range string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusRangeError {
    #[error("empty status range list")]
    Empty,
    #[error("`{0}` is not a status code (100-599) or a range like 200-299")]
    BadItem(String),
    #[error("range `{0}` ends before it starts")]
    Reversed(String),
}

impl StatusRanges {
    pub fn parse(s: &str) -> Result<Self, StatusRangeError> {
        if s.trim().is_empty() {
            return Err(StatusRangeError::Empty);
        }
        let code = |t: &str, item: &str| -> Result<u16, StatusRangeError> {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| StatusRangeError::BadItem(item.trim().to_owned()))
        };
        let mut ranges = Vec::new();
        for item in s.split(',') {
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (code(a, item)?, code(b, item)?),
                None => {
                    let c = code(item, item)?;
                    (c, c)
                }
            };
            if hi < lo {
                return Err(StatusRangeError::Reversed(item.trim().to_owned()));
            }
            ranges.push((lo, hi));
        }
        Ok(Self(ranges))
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

impl fmt::Display for StatusRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        let r = StatusRanges::parse("200-299, 301").unwrap();
        assert!(r.contains(200) && r.contains(299) && r.contains(301));
        assert!(!r.contains(300) && !r.contains(302));
        assert_eq!(r.to_string(), "200-299,301");
    }

    #[test]
    fn rejects_nonsense() {
        assert_eq!(StatusRanges::parse(""), Err(StatusRangeError::Empty));
        assert!(matches!(
            StatusRanges::parse("abc"),
            Err(StatusRangeError::BadItem(_))
        ));
        assert!(matches!(
            StatusRanges::parse("700"),
            Err(StatusRangeError::BadItem(_))
        ));
        assert!(matches!(
            StatusRanges::parse("300-200"),
            Err(StatusRangeError::Reversed(_))
        ));
        assert!(matches!(
            StatusRanges::parse("200-"),
            Err(StatusRangeError::BadItem(_))
        ));
    }
}
