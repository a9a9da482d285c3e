//! Drives the frame vectors in `tests/vectors/frames.txt` through a connection of the receiving
//! role, whole and in several chunkings, and checks the events and the close frame on the wire.

use std::collections::HashSet;
use std::time::Instant;

use tidings_tests::vectors::{Vector, check, parse_vectors};
use tidings_tests::{connection, feed, take_output};

fn load() -> Vec<Vector> {
    let text = include_str!("../vectors/frames.txt");
    parse_vectors(text).expect("frames.txt parses")
}

#[test]
fn vector_file_has_unique_names_and_enough_cases() {
    let vectors = load();
    assert!(vectors.len() >= 30, "only {} vectors", vectors.len());
    let mut names = HashSet::new();
    for v in &vectors {
        assert!(names.insert(v.name.clone()), "duplicate vector {}", v.name);
        assert!(!v.wire.is_empty(), "{}: empty wire", v.name);
    }
}

#[test]
fn frame_vectors_give_expected_events_under_every_chunking() {
    let mut failures = Vec::new();
    for v in load() {
        for chunk in [None, Some(1), Some(2), Some(3), Some(7), Some(64)] {
            let now = Instant::now();
            let mut conn = connection(v.receiver, v.config(), now);
            let events = feed(&mut conn, now, &v.wire, chunk);
            let output = take_output(&mut conn);
            if let Err(e) = check(&v, &events, &output) {
                failures.push(format!("{} (chunk {chunk:?}): {e}", v.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn after_a_failure_vector_no_more_events_ever() {
    for v in load() {
        let now = Instant::now();
        let mut conn = connection(v.receiver, v.config(), now);
        let events = feed(&mut conn, now, &v.wire, None);
        if tidings_tests::closed(&events).is_some() {
            conn.receive(now, &v.wire);
            conn.receive_eof(now);
            conn.handle_timeout(now);
            assert_eq!(conn.poll_event(), None, "{}", v.name);
        }
    }
}

#[test]
fn vector_checker_rejects_wrong_expectations() {
    // The checker itself must be able to fail: a wrong payload, a missing event, a wrong code.
    let cases = [
        "wrong_text | client | 81 05 48 65 6c 6c 6f | text:Hellx",
        "missing_event | client | 81 01 41 82 01 42 | text:A",
        "wrong_fail_code | client | 81 02 c3 28 | fail:1002",
        "clean_is_not_fail | client | 88 02 03 e8 | close:1000 fail:1000",
    ];
    for case in cases {
        let v = &parse_vectors(case).expect("parses")[0];
        let now = Instant::now();
        let mut conn = connection(v.receiver, v.config(), now);
        let events = feed(&mut conn, now, &v.wire, None);
        let output = take_output(&mut conn);
        assert!(check(v, &events, &output).is_err(), "{} passed", v.name);
    }
}

#[test]
fn hex_repeat_syntax_expands_to_raw_bytes() {
    let bytes = tidings_tests::vectors::parse_hex("82 7e 01 00 5a*3 0102").expect("hex");
    assert_eq!(
        bytes,
        [0x82, 0x7e, 0x01, 0x00, 0x5a, 0x5a, 0x5a, 0x01, 0x02]
    );
    assert!(tidings_tests::vectors::parse_hex("8").is_err());
    assert!(tidings_tests::vectors::parse_hex("0102*3").is_err());
}
