//! Small grammars of the desired-state format: names, host names, URLs, durations.

use std::time::Duration;

use crate::diagnostic::quote;

/// `metadata.name`: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters (DNS label).
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Why a host name is not a fully qualified domain name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FqdnError {
    #[error("must have at least two labels, like app1.example.eng")]
    NotQualified,
    #[error("label {} must be 1-63 letters, digits or `-`, not starting or ending with `-`", quote(.0))]
    BadLabel(String),
    #[error("is an IP address; a fully qualified host name is required (certificates and service URLs name hosts)")]
    IpAddress,
    #[error("ends in an all-numeric label; no top-level domain is all digits")]
    NumericTopLevel,
}

/// A fully qualified host name: two or more DNS labels, not an address. One trailing dot
/// (the DNS root) is allowed; see [`normalize_host`] for comparing names.
pub fn check_fqdn(s: &str) -> Result<(), FqdnError> {
    let bare = s
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(s);
    let bare = bare.strip_suffix('.').unwrap_or(bare);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Err(FqdnError::IpAddress);
    }
    let s = s.strip_suffix('.').unwrap_or(s);
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return Err(FqdnError::NotQualified);
    }
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(FqdnError::BadLabel((*label).to_owned()));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(FqdnError::NumericTopLevel);
    }
    Ok(())
}

/// A host name as compared and used: lowercase, without the DNS root's trailing dot, so
/// `App2.Example.eng.` and `app2.example.eng` are one host.
pub fn normalize_host(s: &str) -> String {
    s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase()
}

/// A host that is a name (one or more labels) or an IPv4/IPv6 address.
pub fn is_valid_host(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A SQL Server address: host name or IP, optionally followed by `\INSTANCE`.
pub fn is_valid_sql_server(s: &str) -> bool {
    let (host, instance) = match s.split_once('\\') {
        Some((h, i)) => (h, Some(i)),
        None => (s, None),
    };
    let instance_ok = instance.is_none_or(|i| {
        !i.is_empty()
            && i.len() <= 16
            && i.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$')
    });
    is_valid_host(host) && instance_ok
}

/// `scheme://host[:port][/]` split into parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUrl {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must start with {0}")]
    Scheme(&'static str),
    #[error("has no host")]
    NoHost,
    #[error("host {} is not a valid host name or address", quote(.0))]
    BadHost(String),
    #[error("port {} is not a whole number from 1 to 65535", quote(.0))]
    BadPort(String),
    #[error("must not have a path, query or credentials")]
    Extra,
}

/// Parse a URL with no path, for one of the allowed schemes.
pub fn parse_host_url(
    s: &str,
    schemes: &'static [&'static str],
    expected: &'static str,
) -> Result<HostUrl, UrlError> {
    let (scheme, rest) = s.split_once("://").ok_or(UrlError::Scheme(expected))?;
    if !schemes.contains(&scheme) {
        return Err(UrlError::Scheme(expected));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err(UrlError::Extra);
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| UrlError::BadHost(rest.to_owned()))?;
        (h, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if !is_valid_host(host) {
        return Err(UrlError::BadHost(host.to_owned()));
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| UrlError::BadPort(p.to_owned()))?,
        ),
        None => None,
    };
    Ok(HostUrl {
        scheme: scheme.to_owned(),
        host: host.to_owned(),
        port,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a duration like 500ms, 10s, 1m30s or 90d", quote(.0))]
pub struct DurationError(pub String);

/// Durations as in Prometheus and Go: integers with units ms, s, m, h, concatenated; also
/// `d` (24h, as Prometheus allows), since certificate lifetimes are counted in days.
///
/// Not `humantime`: it accepts far more (`10 s`, `2 hours`, `1.5h`, `1w`, and `1M`/`1y` as
/// 30.44/365.25 days), so files valid here would mean other things elsewhere, and its
/// printer writes `90d` as `2months 29days 2h 52m 48s`. The format stays this grammar.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(s.to_owned());
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => return Err(err()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A duration as the files write it (`90d`, `1m40s`, `250ms`): `parse_duration` reads it
/// back to the same value, to the millisecond.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    let millis = d.subsec_millis();
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if millis > 0 || out.is_empty() {
        out.push_str(&format!("{millis}ms"));
    }
    out
}

/// A Windows drive: one letter and a colon.
pub fn is_valid_drive(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// A release such as `6.12.1` or `6.12.1.2040`: two to four dot-separated numbers,
/// optionally followed by build metadata as in SemVer (`+` and dot-separated identifiers
/// of letters, digits and `-`: `6.13.0+lab-fail-PSWS`), which never orders releases.
pub fn is_valid_release(s: &str) -> bool {
    let (core, build) = match s.split_once('+') {
        Some((core, build)) => (core, Some(build)),
        None => (s, None),
    };
    let build_ok = build.is_none_or(|b| {
        b.split('.')
            .all(|id| !id.is_empty() && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
    });
    let parts: Vec<&str> = core.split('.').collect();
    build_ok
        && (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("app1"));
        assert!(is_valid_name("a-b"));
        assert!(!is_valid_name("App1"));
        assert!(!is_valid_name("-a"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name(&"a".repeat(64)));
    }

    #[test]
    fn fqdns() {
        assert!(check_fqdn("app1.example.eng").is_ok());
        assert_eq!(check_fqdn("app1"), Err(FqdnError::NotQualified));
        assert!(matches!(
            check_fqdn("app_1.example.eng"),
            Err(FqdnError::BadLabel(_))
        ));
        assert!(matches!(check_fqdn("a..b"), Err(FqdnError::BadLabel(_))));
        assert!(check_fqdn("app2.example.eng.").is_ok());
        assert_eq!(normalize_host("App2.Example.ENG."), "app2.example.eng");
    }

    #[test]
    fn an_address_is_not_a_host_name() {
        for ip in ["10.0.0.5", "10.0.0.5.", "::1", "[::1]", "fe80::1"] {
            assert_eq!(check_fqdn(ip), Err(FqdnError::IpAddress), "{ip}");
        }
        assert_eq!(check_fqdn("1.2.3"), Err(FqdnError::NumericTopLevel));
        assert_eq!(
            check_fqdn("app1.example.123"),
            Err(FqdnError::NumericTopLevel)
        );
        assert!(
            check_fqdn("10.example.eng").is_ok(),
            "numeric labels below the top are fine"
        );
    }

    #[test]
    fn urls() {
        let u = parse_host_url("https://app1.example.eng:7443", &["https"], "https://").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("app1.example.eng", Some(7443)));
        assert!(parse_host_url("https://127.0.0.2:7443/", &["https"], "https://").is_ok());
        assert!(parse_host_url("https://[::1]:7443", &["https"], "https://").is_ok());
        assert_eq!(
            parse_host_url("http://x.y", &["https"], "https://"),
            Err(UrlError::Scheme("https://"))
        );
        assert_eq!(
            parse_host_url("https://x.y:0", &["https"], "https://"),
            Err(UrlError::BadPort("0".into()))
        );
        assert_eq!(
            parse_host_url("https://x.y/p", &["https"], "https://"),
            Err(UrlError::Extra)
        );
    }

    #[test]
    fn durations_print_as_the_files_write_them() {
        for (d, text) in [
            (Duration::from_secs(90 * 86_400), "90d"),
            (Duration::from_secs(100), "1m40s"),
            (Duration::from_millis(1_250), "1s250ms"),
            (Duration::ZERO, "0ms"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::from_secs(36 * 3600)));
        assert!(parse_duration("1w").is_err());
        // What humantime would accept, and the format does not.
        for other in ["10 s", "10sec", "2 hours", "1.5h", "1M", "1y", "1h 30m"] {
            assert!(parse_duration(other).is_err(), "{other}");
        }
        assert!(parse_duration("d").is_err());
    }

    #[test]
    fn sql_servers_drives_releases() {
        assert!(is_valid_sql_server("db.example.eng"));
        assert!(is_valid_sql_server("10.0.0.5\\PSINST"));
        assert!(!is_valid_sql_server("db\\"));
        assert!(is_valid_drive("D:"));
        assert!(!is_valid_drive("DD:"));
        assert!(is_valid_release("6.12.1"));
        assert!(!is_valid_release("6.x"));
        assert!(is_valid_release("6.13.0+lab-fail-PSWS"));
        assert!(is_valid_release("6.13.0+lab-fail-PSWS.b7"));
        assert!(!is_valid_release("6.13.0+"));
        assert!(!is_valid_release("6.13.0+a..b"));
        assert!(!is_valid_release("6.13.0+a b"));
    }
}
