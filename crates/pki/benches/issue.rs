//! Issuing server certificates for a 1,000-server fleet: key generation, signing and PEM
//! encoding, as the certificate controller does on a fresh fleet or a mass renewal.
//!
//! `cargo bench -p steward-pki --bench issue` (criterion prints the time per 1,000).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use steward_pki::{CertificateAuthority, KeyAlgorithm};

const FLEET: usize = 1_000;
const LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

fn issue_fleet(ca: &CertificateAuthority, servers: usize) -> usize {
    let mut bytes = 0;
    for i in 0..servers {
        let names = [
            format!("app{i}.example.eng"),
            "ps.lb.example.eng".to_owned(),
        ];
        let issued = ca.issue_server(&names, &[], LIFETIME).expect("issue");
        bytes += issued.cert_pem.len();
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("issue_server");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    // P-384 key generation is ~20x slower in ring: a tenth of the fleet keeps the run short.
    for (name, algorithm, servers) in [
        ("ecdsa_p256_x1000", KeyAlgorithm::EcdsaP256, FLEET),
        ("ecdsa_p384_x100", KeyAlgorithm::EcdsaP384, FLEET / 10),
    ] {
        let ca = CertificateAuthority::init_with(dir.path().join(name), algorithm)
            .expect("CA")
            .with_leaf_algorithm(algorithm);
        group.bench_function(name, |b| {
            b.iter_batched(
                || (),
                |()| issue_fleet(&ca, servers),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
