//! Load + validate + plan of a generated desired state: 1,000 servers x 11 services behind
//! a load balancer, one file per server (as a GitOps repository would hold them).
//! Goal: <= 200 ms on a 2-core machine. Run: `cargo bench -p steward-model --bench validate_plan`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use steward_model::plan::{plan, Observed};
use steward_model::{validate_dir, ServiceKind};
use steward_testkit::Fixture;

const SERVERS: usize = 1_000;

fn write_fleet(dir: &Path) {
    let installation = Fixture::installation()
        .name("big")
        .load_balancer("lb.example.eng")
        .database("PS", "ps", "env:PS_DB_PASSWORD");
    std::fs::write(dir.join("installation.yaml"), installation.yaml()).unwrap();
    std::fs::create_dir_all(dir.join("servers")).unwrap();
    for i in 0..SERVERS {
        let server = Fixture::server(&format!("app{i}"))
            .certificate(&format!(
                "{{certFile: certs/app{i}.pem, keyFile: certs/app{i}.key}}"
            ))
            .services(ServiceKind::ALL.map(ServiceKind::as_str));
        std::fs::write(dir.join(format!("servers/app{i}.yaml")), server.yaml()).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    write_fleet(dir.path());
    let compiled = validate_dir(dir.path()).unwrap();
    assert!(
        compiled.snapshot.is_some(),
        "{:?}",
        &compiled.diagnostics[..3.min(compiled.diagnostics.len())]
    );
    let mut group = c.benchmark_group("desired_state");
    group.sample_size(20);
    group.bench_function("load_validate_plan_1000x11", |b| {
        b.iter(|| {
            let compiled = validate_dir(dir.path()).unwrap();
            let snapshot = compiled.snapshot.unwrap();
            let p = plan(&snapshot, &Observed::default());
            assert_eq!(
                p.steps
                    .iter()
                    .filter(|s| matches!(s, steward_model::plan::Step::Install { .. }))
                    .count(),
                SERVERS * 11
            );
            p
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
