//! Backup and restore of a 1,000-server state (the CA, 1,000 issued server certificates
//! and keys, their memo, the agents' records), without the passphrase KDF (scrypt at
//! work factor 2^1) and with it (age's calibration: about a second by design).
//!
//! `cargo bench -p steward-backup --bench backup_restore` (criterion prints the figures).

#[path = "../tests/support/fleet.rs"]
mod fleet;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use steward_backup::{backup, read_file, restore_archive, write_private_file, Kdf, Passphrase};

const FLEET: usize = 1_000;

fn bench(c: &mut Criterion) {
    let source = tempfile::tempdir().expect("tempdir");
    fleet::fleet_state(source.path(), FLEET);
    let passphrase = Passphrase::new("benchmark passphrase".to_owned()).expect("passphrase");
    let mut group = c.benchmark_group("backup_restore_1000_servers");
    group.sample_size(10);
    // The same few iterations per sample (not 1, 2, ... 10): fewer restored trees kept.
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(10));
    for (name, kdf) in [
        ("without_kdf", Kdf::WorkFactor(1)),
        ("with_kdf", Kdf::Calibrated),
    ] {
        let scratch = tempfile::tempdir().expect("tempdir");
        let file = scratch.path().join("state.age");
        // Restore's input, also when only the restore benchmarks are selected.
        let archive = backup(source.path(), &passphrase, kdf).expect("backup");
        write_private_file(&file, &archive).expect("write");
        group.bench_function(format!("backup_{name}"), |b| {
            b.iter(|| {
                let archive = backup(source.path(), &passphrase, kdf).expect("backup");
                write_private_file(&file, &archive).expect("write");
                archive.len()
            })
        });
        // Every target is kept until this benchmark is done (~40 MB each): deleting one
        // while the next is restored measured the filesystem instead. On ext4 without a
        // journal (this build machine's), creating an inode skips every one deleted in the
        // last ~30 s (`recently_deleted` in the kernel's profile: ~60 % of the time), so
        // each iteration paid for the 10,000 inodes the previous one freed.
        let mut targets = Vec::new();
        group.bench_function(format!("restore_{name}"), |b| {
            b.iter_batched(
                || tempfile::tempdir_in(scratch.path()).expect("tempdir"),
                |target| {
                    let archive = read_file(&file).expect("read");
                    let (_, restored) =
                        restore_archive(&archive, &passphrase, target.path(), false)
                            .expect("restore");
                    assert!(restored.files > 4 * FLEET);
                    targets.push(target);
                },
                BatchSize::PerIteration,
            )
        });
        drop(targets);
        let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        println!("archive of {FLEET} servers: {size} bytes");
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
