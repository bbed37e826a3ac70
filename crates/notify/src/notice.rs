//! What a mail is about, and which recorded events become one.
//!
//! The controllers record events with an object (`service/app1/PSIS`), a type (warning or
//! normal) and a reason (`HealthCheckFailing`). [`event_for`] maps them to the closed list
//! of [`NotificationEvent`]s by reason, so kinds built later flow without a change here:
//! an event whose reason is the notification event's own name (`DatabaseDown`,
//! `ActiveDirectoryGroupMissing`, `HL7Failover`, `UpgradeHalted`, `UpgradeComplete`,
//! `DesiredStateInvalid`) is that event.

use std::time::SystemTime;

use steward_model::notifications::NotificationEvent;
use time::OffsetDateTime;

/// Reasons of a service that is down (its conditions' reasons, see the service controller).
/// The dashboard shows a service whose Ready condition has one of these as Down.
pub const SERVICE_DOWN: &[&str] = &[
    "HealthCheckFailing",
    "NotRunning",
    "NotInstalled",
    "PortInUse",
    "ExitedWithError",
    "StartFailed",
    "InstallFailed",
];

/// Reasons of an agent that does not answer (the server controller's errors).
const AGENT_DOWN: &[&str] = &[
    "AgentConnectionRefused",
    "AgentUnreachable",
    "AgentTlsFailure",
    "AgentTimeout",
    "AgentError",
    "AgentBadResponse",
];

/// Repairs: what steward did to bring an object back to the desired state.
const DRIFT_CORRECTED: &[&str] = &["Restarted", "Reinstalled"];

/// Certificate warnings that are not failures: expiry and drift have events of their own.
const CERTIFICATE_NOT_FAILED: &[&str] = &[
    "RenewalDue",
    "CertificateDrift",
    "DriftDetected",
    "CertificateInstalled",
    "CertificateIssued",
    "CertificateRenewed",
];

/// The notification event a recorded event is, if any.
pub fn event_for(object: &str, warning: bool, reason: &str) -> Option<NotificationEvent> {
    if let Some(named) = NotificationEvent::parse(reason) {
        return Some(named);
    }
    let kind = object.split('/').next().unwrap_or_default();
    match kind {
        "service" if warning && SERVICE_DOWN.contains(&reason) => {
            Some(NotificationEvent::ServiceDown)
        }
        "service" if reason == "Healthy" => Some(NotificationEvent::ServiceRecovered),
        "service" if DRIFT_CORRECTED.contains(&reason) => Some(NotificationEvent::DriftCorrected),
        "server" if AGENT_DOWN.contains(&reason) => Some(NotificationEvent::AgentDown),
        "certificate" if reason == "RenewalDue" => Some(NotificationEvent::CertificateExpiring),
        // A certificate put back after it was replaced or removed from the server.
        "certificate"
            if warning && matches!(reason, "CertificateInstalled" | "CertificateIssued") =>
        {
            Some(NotificationEvent::DriftCorrected)
        }
        "certificate" if warning && !CERTIFICATE_NOT_FAILED.contains(&reason) => {
            Some(NotificationEvent::CertificateFailed)
        }
        "database" if warning && reason.contains("Unreachable") => {
            Some(NotificationEvent::DatabaseDown)
        }
        "directory" if reason == "GroupMissing" => {
            Some(NotificationEvent::ActiveDirectoryGroupMissing)
        }
        _ => None,
    }
}

/// One thing worth a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event: NotificationEvent,
    /// `service/app1/PSIS`, `server/app1`, `certificate/app1`, `installation/ps` ...
    pub object: String,
    pub reason: String,
    pub message: String,
    pub time: OffsetDateTime,
    pub warning: bool,
}

impl Notice {
    /// The notice a recorded event makes, if it is one of the notification events.
    pub fn from_event(
        object: &str,
        warning: bool,
        reason: &str,
        message: &str,
        time: OffsetDateTime,
    ) -> Option<Self> {
        event_for(object, warning, reason).map(|event| Self {
            event,
            object: object.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            time,
            warning,
        })
    }

    /// A notice made up for `steward notify test`: the object `test/notify` says what it is
    /// in any subject template.
    pub fn test() -> Self {
        Self {
            event: NotificationEvent::ServiceDown,
            object: "test/notify".into(),
            reason: "NotificationTest".into(),
            message: "a test message sent by `steward notify test`; nothing is down".into(),
            time: OffsetDateTime::from(SystemTime::now()),
            warning: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use NotificationEvent as E;

    #[test]
    fn todays_reasons_map_to_their_events() {
        let cases = [
            (
                "service/app1/PSIS",
                true,
                "HealthCheckFailing",
                Some(E::ServiceDown),
            ),
            ("service/app1/PSIS", true, "PortInUse", Some(E::ServiceDown)),
            (
                "service/app1/PSIS",
                false,
                "Healthy",
                Some(E::ServiceRecovered),
            ),
            ("service/app1/PSIS", false, "Installed", None),
            (
                "service/app1/PSIS",
                true,
                "Restarted",
                Some(E::DriftCorrected),
            ),
            (
                "server/app1",
                true,
                "AgentConnectionRefused",
                Some(E::AgentDown),
            ),
            ("server/app1", false, "AgentReady", None),
            (
                "certificate/app1",
                true,
                "RenewalDue",
                Some(E::CertificateExpiring),
            ),
            (
                "certificate/app1",
                true,
                "UntrustedIssuer",
                Some(E::CertificateFailed),
            ),
            (
                "certificate/app1",
                true,
                "InstallFailed",
                Some(E::CertificateFailed),
            ),
            (
                "certificate/app1",
                true,
                "CertificateIssued",
                Some(E::DriftCorrected),
            ),
            ("certificate/app1", false, "CertificateIssued", None),
            ("installation/ps", false, "DesiredStateChanged", None),
        ];
        for (object, warning, reason, want) in cases {
            assert_eq!(
                event_for(object, warning, reason),
                want,
                "{object} {reason}"
            );
        }
    }

    #[test]
    fn reasons_named_after_an_event_are_that_event() {
        // What the database, directory, HL7 and upgrade controllers record once they exist.
        for e in NotificationEvent::ALL {
            assert_eq!(event_for("anything/x", true, e.as_str()), Some(e));
        }
    }
}
