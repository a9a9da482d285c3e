//! Masking (RFC 6455 §5.3) and UTF-8 validation (§5.6) throughput, each next
//! to its reference measured in the same run: `memcpy` of the same buffer for
//! masking, `std::str::from_utf8` for validation. Compare ratios, not
//! absolute numbers: these machines are shared.
//!
//! `cargo bench -p tidings-core --bench mask`

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tidings_core::Utf8Validator;
use tidings_core::mask::apply_mask;

const MIB: usize = 1 << 20;
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn mask_vs_memcpy(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask_1MiB");
    group.throughput(Throughput::Bytes(MIB as u64));
    let src = vec![0x5au8; MIB];
    let mut dst = vec![0u8; MIB];
    group.bench_function("memcpy", |b| {
        b.iter(|| dst.copy_from_slice(black_box(&src)));
    });
    group.bench_function("apply_mask", |b| {
        b.iter(|| apply_mask(black_box(&mut dst), black_box(KEY)));
    });
    // The same call on a slice that starts one byte past the allocation's
    // alignment: unaligned payloads are the normal case after a header.
    group.bench_function("apply_mask_unaligned", |b| {
        b.iter(|| apply_mask(black_box(&mut dst[1..]), black_box(KEY)));
    });
    group.finish();
}

fn mask_sizes(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask_sizes");
    for size in [64usize, 1024, 64 * 1024] {
        let mut buf = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("apply_mask", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY)));
        });
    }
    group.finish();
}

/// 1 MiB of text mixing ASCII with 2-, 3- and 4-byte characters.
fn mixed_text() -> Vec<u8> {
    let sample = "WebSocket κόσμε – データ 🚀 frames, ";
    let mut text = String::with_capacity(MIB + sample.len());
    while text.len() + sample.len() <= MIB {
        text.push_str(sample);
    }
    while text.len() < MIB {
        text.push('.');
    }
    text.into_bytes()
}

fn utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8_1MiB");
    group.throughput(Throughput::Bytes(MIB as u64));
    let ascii = vec![b'a'; MIB];
    let mixed = mixed_text();
    for (name, input) in [("ascii", &ascii), ("mixed", &mixed)] {
        group.bench_with_input(
            BenchmarkId::new("std_from_utf8", name),
            input,
            |b, input| {
                b.iter(|| std::str::from_utf8(black_box(input)).is_ok());
            },
        );
        group.bench_with_input(
            BenchmarkId::new("Utf8Validator", name),
            input,
            |b, input| {
                b.iter(|| {
                    let mut v = Utf8Validator::default();
                    let fed = v.feed(black_box(input));
                    fed.and_then(|()| v.finish()).is_ok()
                });
            },
        );
        // Fed in 4 KiB reads, so characters split across chunks are paid for.
        group.bench_with_input(
            BenchmarkId::new("Utf8Validator_4KiB_chunks", name),
            input,
            |b, input| {
                b.iter(|| {
                    let mut v = Utf8Validator::default();
                    let fed = black_box(input)
                        .chunks(4096)
                        .try_for_each(|chunk| v.feed(chunk));
                    fed.and_then(|()| v.finish()).is_ok()
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, mask_vs_memcpy, mask_sizes, utf8);
criterion_main!(benches);
