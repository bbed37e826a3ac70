//! Steward's checks of existing (third-party) certificates, against certificates, chains
//! and PFX files that the `openssl` command-line tool makes at test time.

#[path = "support/openssl.rs"]
mod openssl;

use openssl::{Ca, LeafSpec, Openssl};
use steward_pki::{
    check_server_certificate, read_pfx, CertificateProblem, Expectations, PfxError, TrustAnchors,
};
use time::OffsetDateTime;

const HOST: &str = "app1.example.eng";
const LB: &str = "ps.example.eng";

struct Pki {
    _dir: tempfile::TempDir,
    ssl: Openssl,
    root: Ca,
    issuing: Ca,
}

fn pki() -> Option<Pki> {
    let dir = tempfile::tempdir().unwrap();
    let ssl = openssl::openssl(&dir.path().join("ssl"))?;
    let root = ssl.root_ca("root", "Corp Root CA");
    let issuing = ssl.intermediate_ca(&root, "issuing", "Corp Issuing CA");
    Some(Pki {
        _dir: dir,
        ssl,
        root,
        issuing,
    })
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// Check a PEM pair against the corporate root for `names`; the problems' reasons.
fn check(
    pki: &Pki,
    cert_pem: &str,
    key_pem: &str,
    names: &[&str],
) -> Result<steward_pki::CertificateInfo, Vec<&'static str>> {
    check_against(&pki.root, cert_pem, key_pem, names)
        .map_err(|problems| problems.iter().map(CertificateProblem::reason).collect())
}

/// Check a PEM pair for `names`, trusting only `anchor`.
fn check_against(
    anchor: &Ca,
    cert_pem: &str,
    key_pem: &str,
    names: &[&str],
) -> Result<steward_pki::CertificateInfo, Vec<CertificateProblem>> {
    let anchors = TrustAnchors::from_pem(&[read(&anchor.cert)]).unwrap();
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    check_server_certificate(
        cert_pem,
        key_pem,
        &Expectations {
            names: &names,
            anchors: Some(&anchors),
            now: OffsetDateTime::now_utc(),
        },
    )
}

#[test]
fn a_valid_chain_passes_with_the_thumbprint_openssl_and_windows_show() {
    let Some(pki) = pki() else { return };
    let leaf = pki
        .ssl
        .leaf(&pki.issuing, "good", &LeafSpec::new(HOST, &[HOST, LB]));
    let chain = pki
        .ssl
        .bundle("good.chain.pem", &[&leaf.cert, &pki.issuing.cert]);
    let info = check(&pki, &read(&chain), &read(&leaf.key), &[HOST, LB]).unwrap();
    assert_eq!(info.sha1_thumbprint, pki.ssl.sha1_thumbprint(&leaf.cert));
    assert_eq!(info.dns_names, [HOST, LB]);

    // Without its intermediate the leaf does not reach the root.
    assert_eq!(
        check(&pki, &read(&leaf.cert), &read(&leaf.key), &[HOST]).unwrap_err(),
        ["UntrustedIssuer"]
    );
    // Directly trusting the issuing CA is enough, too.
    check_against(&pki.issuing, &read(&leaf.cert), &read(&leaf.key), &[HOST]).unwrap();
}

#[test]
fn an_rsa_certificate_is_accepted() {
    let Some(pki) = pki() else { return };
    let mut spec = LeafSpec::new(HOST, &[HOST]);
    spec.rsa = true;
    let leaf = pki.ssl.leaf(&pki.root, "rsa", &spec);
    check(&pki, &read(&leaf.cert), &read(&leaf.key), &[HOST]).unwrap();
}

#[test]
fn each_fault_has_its_own_reason() {
    let Some(pki) = pki() else { return };
    let ssl = &pki.ssl;
    let root = &pki.root;

    let mut expired = LeafSpec::new(HOST, &[HOST]);
    expired.start = Some("20200101000000Z");
    expired.end = Some("20200201000000Z");
    let leaf = ssl.leaf(root, "expired", &expired);
    assert_eq!(
        check(&pki, &read(&leaf.cert), &read(&leaf.key), &[HOST]).unwrap_err(),
        ["Expired"]
    );

    let mut future = LeafSpec::new(HOST, &[HOST]);
    future.start = Some("20990101000000Z");
    future.end = Some("20991231000000Z");
    let leaf = ssl.leaf(root, "future", &future);
    assert_eq!(
        check(&pki, &read(&leaf.cert), &read(&leaf.key), &[HOST]).unwrap_err(),
        ["NotYetValid"]
    );

    // The common name is the host, but without a subjectAltName clients refuse it.
    let leaf = ssl.leaf(root, "nosan", &LeafSpec::new(HOST, &[]));
    assert_eq!(
        check(&pki, &read(&leaf.cert), &read(&leaf.key), &[HOST]).unwrap_err(),
        ["NoSubjectAltName"]
    );

    let leaf = ssl.leaf(
        root,
        "wronghost",
        &LeafSpec::new("app2.example.eng", &["app2.example.eng"]),
    );
    assert_eq!(
        check(&pki, &read(&leaf.cert), &read(&leaf.key), &[HOST]).unwrap_err(),
        ["HostnameNotInSan"]
    );
    // The load balancer's name is required too when there is one.
    let leaf = ssl.leaf(root, "nolb", &LeafSpec::new(HOST, &[HOST]));
    let problems =
        check_against(root, &read(&leaf.cert), &read(&leaf.key), &[HOST, LB]).unwrap_err();
    assert_eq!(
        problems,
        [CertificateProblem::HostnameNotInSan {
            missing: vec![LB.to_owned()],
            present: vec![HOST.to_owned()],
        }]
    );
    // A wildcard covers both.
    let leaf = ssl.leaf(
        root,
        "wild",
        &LeafSpec::new("*.example.eng", &["*.example.eng"]),
    );
    check(&pki, &read(&leaf.cert), &read(&leaf.key), &[HOST, LB]).unwrap();

    let a = ssl.leaf(root, "a", &LeafSpec::new(HOST, &[HOST]));
    let b = ssl.leaf(root, "b", &LeafSpec::new(HOST, &[HOST]));
    assert_eq!(
        check(&pki, &read(&a.cert), &read(&b.key), &[HOST]).unwrap_err(),
        ["KeyMismatch"]
    );

    let other = ssl.root_ca("other", "Elsewhere Root CA");
    let leaf = ssl.leaf(&other, "foreign", &LeafSpec::new(HOST, &[HOST]));
    let problems = check(&pki, &read(&leaf.cert), &read(&leaf.key), &[HOST]).unwrap_err();
    assert_eq!(problems, ["UntrustedIssuer"]);
}

#[test]
fn pfx_files_open_with_the_right_password_only() {
    let Some(pki) = pki() else { return };
    let leaf = pki
        .ssl
        .leaf(&pki.issuing, "pfxleaf", &LeafSpec::new(HOST, &[HOST]));
    let thumbprint = pki.ssl.sha1_thumbprint(&leaf.cert);
    for legacy in [false, true] {
        let name = format!("server-{legacy}.pfx");
        let pfx = pki.ssl.pfx(
            &name,
            &leaf,
            &[&pki.issuing.cert, &pki.root.cert],
            "Corr3ct-Horse",
            legacy,
        );
        let bytes = std::fs::read(&pfx).unwrap();

        let err = read_pfx(&bytes, "wrong").unwrap_err();
        assert_eq!(err, PfxError::WrongPassword, "legacy={legacy}");
        assert_eq!(err.reason(), "PfxPasswordWrong");

        let contents = read_pfx(&bytes, "Corr3ct-Horse").unwrap();
        // Leaf and intermediate; the self-signed root is not served.
        assert_eq!(contents.cert_pem.matches("BEGIN CERTIFICATE").count(), 2);
        let info = check(&pki, &contents.cert_pem, contents.key_pem.expose(), &[HOST]).unwrap();
        assert_eq!(info.sha1_thumbprint, thumbprint, "legacy={legacy}");
        assert!(!format!("{contents:?}").contains("Corr3ct"));
    }
    // Not a PFX at all.
    let err = read_pfx(read(&leaf.cert).as_bytes(), "x").unwrap_err();
    assert_eq!(err.reason(), "PfxInvalid");
}
