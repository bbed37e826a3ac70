//! Certificate files as an administrator hands them to steward (`certFile`/`keyFile`,
//! `pfxFile`, `trust`, the installation's CA file), through the same calls the certificate
//! controller and the agent make. The first byte picks the reader; for PEM pairs the rest
//! is split at the first NUL into certificate and key. Never a panic; neither the PFX
//! password nor the private key ever appears in an error or problem.
#![no_main]

use libfuzzer_sys::fuzz_target;
use steward_pki::{
    check_server_certificate, inspect_pem, read_pfx, verify_key_pair, Expectations, TrustAnchors,
};

/// The password of the committed PFX seeds (`fuzz/README.md` says how they were made).
const PASSWORD: &str = "fuzz-pfx-Password-7";

fn split(data: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(data);
    match text.split_once('\0') {
        Some((cert, key)) => (cert.to_owned(), key.to_owned()),
        None => (text.into_owned(), String::new()),
    }
}

/// `secret` (trimmed, when long enough to be told apart from ordinary words and seen once
/// in the input) must not be in `text`.
fn assert_hidden(secret: &str, input: &str, text: &str) {
    let secret = secret.trim();
    if secret.len() >= 12 && input.matches(secret).count() == 1 {
        assert!(!text.contains(secret), "a secret in an error: {text}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&reader, rest)) = data.split_first() else {
        return;
    };
    match reader % 4 {
        0 => {
            let (cert, key) = split(rest);
            if let Ok(info) = inspect_pem(&cert) {
                assert_eq!(info.sha1_thumbprint.len(), 40);
            }
            if let Err(e) = verify_key_pair(&cert, &key) {
                let input = String::from_utf8_lossy(rest);
                assert_hidden(&key, &input, &format!("{e} {e:?}"));
            }
        }
        1 => {
            let (cert, key) = split(rest);
            let anchors = TrustAnchors::from_pem(&[cert.as_str()]).ok();
            let names = ["app1.example.eng".to_owned(), "ps.example.eng".to_owned()];
            let expect = Expectations {
                names: &names,
                anchors: anchors.as_ref(),
                now: time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
            };
            if let Err(problems) = check_server_certificate(&cert, &key, &expect) {
                assert!(!problems.is_empty(), "a refusal names its problems");
                let input = String::from_utf8_lossy(rest);
                for p in &problems {
                    assert_hidden(&key, &input, &format!("{p} {p:?} {}", p.reason()));
                }
            }
        }
        _ => {
            // Most inputs fail the MAC; the committed seeds open with PASSWORD, so
            // mutations of their structure are read before that check.
            let password = if reader % 4 == 2 { PASSWORD } else { "" };
            match read_pfx(rest, password) {
                Ok(contents) => {
                    assert!(contents.cert_pem.contains("BEGIN CERTIFICATE"));
                    let _ = verify_key_pair(&contents.cert_pem, contents.key_pem.expose());
                }
                Err(e) => {
                    let text = format!("{e} {e:?} {}", e.reason());
                    assert!(!text.contains(PASSWORD), "the password in an error: {text}");
                }
            }
        }
    }
});
