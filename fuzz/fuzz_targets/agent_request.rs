//! Request bodies of the agent's API, read the way its routes read them (axum's `Json`
//! extractor, then the route's own checks): `PUT /v1/services/{KIND}`, `PUT
//! /v1/certificate` and `PUT /v1/connection-strings`. The first byte picks the route (and
//! the kind); the rest is the body. Never a panic; an accepted install request is one the
//! catalog allows; no error ever repeats the private key a certificate request carried.
#![no_main]

use std::collections::BTreeSet;

use axum::Json;
use libfuzzer_sys::fuzz_target;
use steward_agent::api::{CertificateRequest, ConnectionStrings, InstallRequest};
use steward_agent::{validate_connection_strings, validate_install, AgentError};
use steward_model::catalog::PortRule;
use steward_model::ServiceKind;

/// The route's reading of a body: a rejection becomes `InvalidRequest` with its text.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, AgentError> {
    Json::<T>::from_bytes(bytes)
        .map(|Json(v)| v)
        .map_err(|e| AgentError::InvalidRequest(e.body_text()))
}

fn install(kind: ServiceKind, bytes: &[u8]) {
    let Ok(request) = body::<InstallRequest>(bytes).and_then(|r| validate_install(kind, r)) else {
        return;
    };
    assert_eq!(
        request.ports.len(),
        kind.port_count(),
        "{kind}: {request:?}"
    );
    if let PortRule::Fixed(fixed) = kind.spec().ports {
        assert_eq!(request.ports, fixed);
    }
    assert!(!request.ports.contains(&0));
    let unique: BTreeSet<u16> = request.ports.iter().copied().collect();
    assert_eq!(unique.len(), request.ports.len());
    let drive = request.drive.as_bytes();
    assert!(drive.len() == 2 && drive[0].is_ascii_uppercase() && drive[1] == b':');
    assert!((1..=64).contains(&request.release.len()));
    assert!(!request.installed_by.trim().is_empty());
    assert!(!request.installed_by.chars().any(char::is_control));
}

fn certificate(bytes: &[u8]) {
    let error = match body::<CertificateRequest>(bytes) {
        Err(e) => e,
        Ok(request) => {
            match steward_pki::verify_key_pair(&request.cert_pem, request.key_pem.expose()) {
                Ok(_) => return,
                Err(e) => AgentError::InvalidCertificate(e),
            }
        }
    };
    // The key as the body spelled it: when it appears once in the body (not also as, say,
    // a field name the client chose), no error text may contain it.
    let Ok(serde_json::Value::Object(doc)) = serde_json::from_slice(bytes) else {
        return;
    };
    let Some(serde_json::Value::String(key)) = doc.get("keyPem") else {
        return;
    };
    let body = String::from_utf8_lossy(bytes);
    let inner = key.trim();
    if inner.len() < 12 || body.matches(inner).count() != 1 {
        return;
    }
    let text = format!("{error} {error:?}");
    assert!(!text.contains(inner), "the private key in an error: {text}");
}

fn connection_strings(bytes: &[u8]) {
    let Ok(strings) = body::<ConnectionStrings>(bytes) else {
        return;
    };
    if validate_connection_strings(&strings).is_ok() {
        for value in [
            Some(&strings.identity_server),
            Some(&strings.psws),
            strings.client.as_ref(),
            strings.api.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            assert!(value.starts_with("http://") || value.starts_with("https://"));
            assert!(!value.chars().any(|c| c.is_control() || c.is_whitespace()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&route, bytes)) = data.split_first() else {
        return;
    };
    match route % 4 {
        0 | 1 => {
            let kinds = ServiceKind::ALL;
            install(kinds[usize::from(route / 4) % kinds.len()], bytes)
        }
        2 => certificate(bytes),
        _ => connection_strings(bytes),
    }
});
