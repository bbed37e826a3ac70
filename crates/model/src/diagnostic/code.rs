//! The stable identifiers of problems, printed in brackets (`error[duplicate-port]`).
//!
//! One list defines the enum, its strings and the two groups, so a code cannot exist
//! without being in a group: the fixture test walks [`Code::ALL`] and the documentation
//! test walks both groups.

use std::fmt;

use serde::{Serialize, Serializer};

macro_rules! codes {
    (
        rules { $($rule:ident => $rule_str:literal,)* }
        directory { $($dir:ident => $dir_str:literal,)* }
    ) => {
        /// A stable, documented identifier of a rule. Bounded: safe as a metric label.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $($rule,)*
            $($dir,)*
        }

        impl Code {
            /// Every code `steward validate` can print for a directory it can open: content
            /// rules and the loader's own (unreadable entries, symbolic links). Each has a
            /// fixture that breaks it and a near miss in `crates/model/tests/fixtures/`.
            pub const ALL: &'static [Code] = &[$(Code::$rule,)*];

            /// Problems of the directory as a whole, which the daemon's watcher reports in
            /// its status (the CLI exits 2 for them instead): there is no file to point at.
            pub const DIRECTORY: &'static [Code] = &[$(Code::$dir,)*];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Code::$rule => $rule_str,)*
                    $(Code::$dir => $dir_str,)*
                }
            }
        }
    };
}

codes! {
    rules {
        YamlSyntax => "yaml-syntax",
        Encoding => "encoding",
        Unreadable => "unreadable",
        Symlink => "symlink",
        UnknownField => "unknown-field",
        MissingField => "missing-field",
        InvalidType => "invalid-type",
        InvalidValue => "invalid-value",
        EmptyValue => "empty-value",
        TooLong => "too-long",
        DuplicateKey => "duplicate-key",
        ApiVersion => "api-version",
        UnknownKind => "unknown-kind",
        InvalidName => "invalid-name",
        DuplicateName => "duplicate-name",
        InstallationCount => "installation-count",
        InvalidFqdn => "invalid-fqdn",
        DuplicateHostname => "duplicate-hostname",
        DuplicatePort => "duplicate-port",
        InvalidPort => "invalid-port",
        PortDisplacesDefault => "port-displaces-default",
        UnknownServiceKind => "unknown-service-kind",
        DuplicateService => "duplicate-service",
        FixedPort => "fixed-port",
        MissingPrerequisite => "missing-prerequisite",
        PairedService => "paired-service",
        ServicePlacement => "service-placement",
        NoServers => "no-servers",
        GeneratedCertificateInProduction => "generated-certificate-in-production",
        GeneratedCertificateWithoutCa => "generated-certificate-without-ca",
        CaCertFile => "ca-cert-file",
        SharedCertificate => "shared-certificate",
        CertificateSource => "certificate-source",
        OptionalServiceCertificate => "optional-service-certificate",
        GroupInTwoRoles => "group-in-two-roles",
        UnmappedGroupMembers => "unmapped-group-members",
        MembersPolicyWithoutMembers => "members-policy-without-members",
        DuplicateDomain => "duplicate-domain",
        InvalidUrl => "invalid-url",
        InvalidPath => "invalid-path",
        InvalidStatusRange => "invalid-status-range",
        InvalidDuration => "invalid-duration",
        TimeoutNotBelowInterval => "timeout-not-below-interval",
        RenewBeforeNotBelowDuration => "renew-before-not-below-duration",
        NotHttp => "not-http",
        DuplicateHealthCheck => "duplicate-health-check",
        InstallTypeMismatch => "install-type-mismatch",
        InvalidRelease => "invalid-release",
        InvalidDrive => "invalid-drive",
        InvalidHost => "invalid-host",
        InvalidCount => "invalid-count",
        SecretReference => "secret-reference",
        ServicePassword => "service-password",
        IdleTimeout => "idle-timeout",
        FarmPort => "farm-port",
        LoadBalancerSettings => "load-balancer-settings",
        Hl7Preferred => "hl7-preferred",
        Hl7Failover => "hl7-failover",
        InvalidTemplate => "invalid-template",
        InvalidEmail => "invalid-email",
        SmtpCredentials => "smtp-credentials",
        UpgradePolicyCount => "upgrade-policy-count",
        InvalidSchedule => "invalid-schedule",
        InvalidTimeZone => "invalid-time-zone",
    }
    directory {
        DirectoryMissing => "directory-missing",
        NotADirectory => "not-a-directory",
        Watcher => "watcher",
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn strings_are_unique_kebab_case() {
        let all: Vec<Code> = Code::ALL.iter().chain(Code::DIRECTORY).copied().collect();
        let strings: BTreeSet<&str> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(strings.len(), all.len(), "two codes share a string");
        for s in strings {
            assert!(
                // Digits for domain words such as `hl7`.
                s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && s.starts_with(|c: char| c.is_ascii_lowercase())
                    && !s.starts_with('-')
                    && !s.ends_with('-'),
                "{s}"
            );
        }
    }
}
