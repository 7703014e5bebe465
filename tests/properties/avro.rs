//! The Confluent-framed Avro decoder (`Codec::decode`, `Codec::decode_any`, then
//! `Envelope::from_value` as the runner does) on arbitrary bytes, on framed records with random
//! bodies, and on mutated valid records, against the dev registry holding every shipped schema.
//! Whatever the bytes: no panic, and either a value or [`CodecError::Malformed`] — never "the
//! registry is unavailable", which would make the runner wait instead of dead-lettering.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use proptest::prelude::*;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use sluice::avro::{register_all, Codec, CodecError, Document, Envelope, SchemaKind};

use super::corpus;

struct Avro {
    rt: tokio::runtime::Runtime,
    codec: Codec,
}

/// The topic each schema is registered for; registered in `SchemaKind::ALL` order, so a fresh
/// registry gives them ids 1..=10 (Document is 1, DeadLetter 7), which the corpus relies on.
fn topic(kind: SchemaKind) -> String {
    format!("fuzz.{}", kind.full_name())
}

/// The dev registry with every shipped schema, and a codec on it; one per test binary.
fn avro() -> &'static Avro {
    static AVRO: OnceLock<Avro> = OnceLock::new();
    AVRO.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let codec = rt.block_on(async {
            let addr = "127.0.0.1:0".parse().expect("addr");
            let registry = sluice::devstack::registry::serve(addr).await.expect("dev registry");
            let settings = SrSettings::new(registry.url());
            let pairs: Vec<_> = SchemaKind::ALL.iter().map(|k| (topic(*k), *k)).collect();
            let ids = register_all(&settings, &pairs).await.expect("register");
            let expected: Vec<u32> = (1..=SchemaKind::ALL.len() as u32).collect();
            assert_eq!(ids.iter().map(|(_, id)| *id).collect::<Vec<_>>(), expected);
            Codec::connect(&settings, &pairs).await.expect("codec")
        });
        Avro { rt, codec }
    })
}

/// Decodes `bytes` both ways; panics (failing the property) unless each ends in a value or a
/// malformed-record error. Returns whether the stage decode succeeded.
fn decodes(bytes: &[u8]) -> bool {
    let a = avro();
    let (decoded, any) = a.rt.block_on(async {
        (a.codec.decode(Some(bytes)).await, a.codec.decode_any(Some(bytes)).await)
    });
    let classified = |e: &CodecError| matches!(e, CodecError::Malformed(m) if !m.is_empty());
    if let Err(e) = &any {
        assert!(classified(e), "decode_any of {bytes:02x?}: {e:?}");
    }
    match decoded {
        Ok(d) => {
            assert!(any.is_ok(), "decode accepted what decode_any refused: {bytes:02x?}");
            // The runner's next step; it may refuse (a dead-letter schema is no envelope).
            let _ = Envelope::from_value(d.kind, d.value);
            true
        }
        Err(e) => {
            assert!(classified(&e), "decode of {bytes:02x?}: {e:?}");
            false
        }
    }
}

fn document(id: String, content: String, metadata: BTreeMap<String, String>) -> Document {
    Document { id, tenant: "t".into(), content, metadata }
}

fn encoded(doc: &Document) -> Vec<u8> {
    let value = Envelope::new(doc.clone()).to_value(SchemaKind::Document).expect("value");
    avro().codec.encode(&topic(SchemaKind::Document), &value).expect("encode")
}

/// An Avro long as written: zigzag, then 7 bits a byte.
fn varint(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn arb_document() -> impl Strategy<Value = Document> {
    let metadata = prop::collection::btree_map(".{0,8}", ".{0,8}", 0..4);
    (".{0,16}", ".{0,64}", metadata).prop_map(|(id, c, m)| document(id, c, m))
}

/// A change to a valid record: truncate, flip a byte, insert bytes, or splice in a long.
#[derive(Debug, Clone)]
enum Mutation {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Long(prop::sample::Index, i64),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let idx = any::<prop::sample::Index>;
    prop_oneof![
        idx().prop_map(Mutation::Truncate),
        (idx(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (idx(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (idx(), any::<i64>()).prop_map(|(i, n)| Mutation::Long(i, n)),
    ]
}

fn mutate(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::Truncate(_) | Mutation::Flip(..) if bytes.is_empty() => {}
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Mutation::Flip(i, x) => {
            let i = i.index(bytes.len());
            bytes[i] ^= x;
        }
        Mutation::Insert(i, b) => {
            let i = i.index(bytes.len() + 1);
            bytes.splice(i..i, b.iter().copied());
        }
        Mutation::Long(i, n) => {
            let i = i.index(bytes.len() + 1);
            bytes.splice(i..i, varint(*n));
        }
    }
    bytes
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn arbitrary_bytes_decode_or_are_malformed(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        decodes(&bytes);
    }

    #[test]
    fn framed_random_bodies_decode_or_are_malformed(
        id in prop_oneof![0..12u32, any::<u32>()],
        body in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.extend_from_slice(&body);
        decodes(&bytes);
    }

    /// Each stage schema starts with the document's id, a string: a length longer than the
    /// rest of the record, or negative, can never decode.
    #[test]
    fn huge_and_negative_lengths_are_malformed(
        id in 1..=6u32,
        len in prop_oneof![17..i64::MAX, (1i64 << 20)..(1i64 << 29), i64::MIN..0],
        tail in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.extend(varint(len));
        bytes.extend_from_slice(&tail);
        prop_assert!(!decodes(&bytes), "a {len}-byte length in {} bytes decoded", bytes.len());
    }

    #[test]
    fn valid_documents_round_trip_and_mutations_never_panic(
        doc in arb_document(),
        mutations in prop::collection::vec(arb_mutation(), 1..4),
    ) {
        let bytes = encoded(&doc);
        let a = avro();
        let back = a.rt.block_on(a.codec.decode(Some(&bytes))).expect("a valid record decodes");
        let envelope = Envelope::from_value(back.kind, back.value).expect("an envelope");
        prop_assert_eq!(envelope.document, doc);
        let mutated = mutations.iter().fold(bytes, mutate);
        decodes(&mutated);
    }
}

/// Every saved input: `*.ok.bin` decodes, `*.malformed.bin` is refused as malformed.
#[test]
fn the_saved_avro_corpus_is_classified_as_named() {
    let files = corpus::files("avro", ".bin");
    for path in &files {
        let name = corpus::name(path);
        let bytes = std::fs::read(path).expect("corpus file");
        let ok = decodes(&bytes);
        assert_eq!(ok, name.ends_with(".ok.bin"), "{name}");
        assert!(ok || name.ends_with(".malformed.bin"), "{name}: name it *.ok or *.malformed");
    }
    assert!(files.len() >= 20, "the corpus is all there");
}

/// A record without a value (a tombstone) is malformed, not a crash.
#[test]
fn a_tombstone_is_malformed() {
    let a = avro();
    let e = a.rt.block_on(a.codec.decode(None)).expect_err("no value");
    assert!(matches!(e, CodecError::Malformed(_)), "{e:?}");
}
