//! The entry's value on the topic: read back as written; anything else refused with a reason.

use proptest::prelude::*;

use super::*;

fn entry() -> SemanticEntry {
    test_entry("acme", "Refund order 1142", &[3.0, 4.0, 0.0], 100)
}

fn decode(e: &SemanticEntry, value: &[u8]) -> Result<SemanticEntry, DecodeError> {
    SemanticEntry::decode(e.record_key().as_bytes(), value)
}

/// Why `value` is refused, or `None` when it is read.
fn refused(e: &SemanticEntry, value: &[u8]) -> Option<DecodeError> {
    decode(e, value).err()
}

/// A valid value with its JSON header replaced by `edit`'s.
fn with_header(edit: impl FnOnce(&mut serde_json::Value)) -> (SemanticEntry, Vec<u8>) {
    let e = entry();
    let value = e.encode();
    let length = u32::from_le_bytes(value[5..9].try_into().expect("4 bytes")) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&value[9..9 + length]).expect("json");
    edit(&mut header);
    let json = serde_json::to_vec(&header).expect("json");
    let mut out = value[..5].to_vec();
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&value[9 + length..]);
    (e, out)
}

/// A valid value with its vector replaced by `floats` (as written, not normalised).
fn with_vector(floats: &[f32]) -> (SemanticEntry, Vec<u8>) {
    let e = entry();
    let value = e.encode();
    let mut out = value[..value.len() - 4 - e.vector.len() * 4].to_vec();
    out.extend_from_slice(&(floats.len() as u32).to_le_bytes());
    floats.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    (e, out)
}

#[test]
fn an_entry_reads_back_as_written_with_a_unit_vector() {
    let e = entry();
    assert_eq!(e.vector, vec![0.6, 0.8, 0.0]);
    let read = decode(&e, &e.encode()).expect("read back");
    assert_eq!(read.encode(), e.encode());
    assert_eq!((read.key, read.text, read.vector), (e.key, e.text, e.vector));
}

#[test]
fn the_record_key_ignores_case_and_spacing_but_not_the_cache_key() {
    let e = entry();
    assert_eq!(e.record_key().len(), 32);
    assert_eq!(record_key(&e.key, "refund  ORDER 1142 "), e.record_key());
    assert_ne!(record_key(&e.key, "Refund order 1143"), e.record_key());
    let other = crate::policy::semantic::key::test_key("globex");
    assert_ne!(record_key(&other, &e.text), e.record_key());
}

#[test]
fn a_forged_or_damaged_value_is_refused_with_its_reason() {
    let e = entry();
    let good = e.encode();
    let mut magic = good.clone();
    magic[0] = b'X';
    let mut version = good.clone();
    version[4] = 2;
    let mut trailing = good.clone();
    trailing.push(0);
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (magic, DecodeError::Magic),
        (version, DecodeError::Version(2)),
        (good[..good.len() - 1].to_vec(), DecodeError::Truncated),
        (trailing, DecodeError::Trailing(1)),
        (vec![0; MAX_VALUE_BYTES + 1], DecodeError::TooLarge(MAX_VALUE_BYTES + 1)),
        (with_vector(&[]).1, DecodeError::Dimensions(0)),
        (with_vector(&[1.0, f32::NAN, 0.0]).1, DecodeError::Vector),
        (with_vector(&[f32::INFINITY, 1.0, 0.0]).1, DecodeError::Vector),
        (with_vector(&[0.0, 0.0, 0.0]).1, DecodeError::Vector),
        (with_header(|h| h["expires_ms"] = 1.into()).1, DecodeError::Expiry),
        (
            with_header(|h| {
                h["cached"]["answer"] = serde_json::json!({"Embedding": {"vector": [1.0]}})
            })
            .1,
            DecodeError::Answer,
        ),
        // Another tenant's key on this record: it would land in the wrong partition.
        (
            with_header(|h| h["key"]["scope"] = serde_json::json!({"tenant": "globex"})).1,
            DecodeError::RecordKey,
        ),
        (
            with_header(|h| h["text"] = "x".repeat(MAX_TEXT_BYTES + 1).into()).1,
            DecodeError::Text(MAX_TEXT_BYTES + 1),
        ),
    ];
    for (value, reason) in cases {
        assert_eq!(refused(&e, &value), Some(reason));
    }
    // A count of dimensions past the bound is refused before anything is allocated for it.
    let mut huge = good[..good.len() - 16].to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(refused(&e, &huge), Some(DecodeError::Dimensions(u32::MAX as usize)));
    let unknown = with_header(|h| h["extra"] = 1.into()).1;
    assert!(matches!(decode(&e, &unknown), Err(DecodeError::Header(_))));
    let header_too_long = [&good[..5], &u32::MAX.to_le_bytes()[..], &good[9..]].concat();
    assert_eq!(refused(&e, &header_too_long), Some(DecodeError::Truncated));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(value in proptest::collection::vec(any::<u8>(), 0..256)) {
        let e = entry();
        let _ = decode(&e, &value);
        let mut prefixed = MAGIC.to_vec();
        prefixed.push(VERSION);
        prefixed.extend_from_slice(&value);
        let _ = decode(&e, &prefixed);
    }

    #[test]
    fn every_truncation_and_byte_flip_is_refused_or_read_safely(cut in 0usize..400, flip in 0usize..400) {
        let e = entry();
        let good = e.encode();
        let cut = cut % good.len();
        prop_assert!(decode(&e, &good[..cut]).is_err());
        let mut flipped = good.clone();
        let at = flip % good.len();
        flipped[at] ^= 0x55;
        if let Ok(read) = decode(&e, &flipped) {
            // A flip inside a float changes the vector, which is still of unit length.
            let norm: f32 = read.vector.iter().map(|x| x * x).sum();
            prop_assert!((norm - 1.0).abs() < 1e-4);
        }
    }
}
