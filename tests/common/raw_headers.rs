//! Kafka headers with raw bytes: keys that are not UTF-8 included. Written through librdkafka
//! directly, since rdkafka's safe API cannot; shared by the test kit and the property tests (which
//! include this file alone: it depends on nothing else of the kit).

use rdkafka::message::OwnedHeaders;

/// Headers with these raw keys and values (librdkafka writes keys that are not UTF-8, which
/// rdkafka's safe API cannot).
pub fn headers_of(pairs: &[(Vec<u8>, Option<Vec<u8>>)]) -> OwnedHeaders {
    let headers = OwnedHeaders::new_with_capacity(pairs.len());
    let native = headers.as_borrowed() as *const rdkafka::message::BorrowedHeaders
        as *mut rdkafka::bindings::rd_kafka_headers_t;
    for (key, value) in pairs {
        let (v, len) = match value {
            Some(v) => (v.as_ptr().cast(), v.len() as isize),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: `native` is the live headers object of `headers`; librdkafka copies `len`
        // bytes of the key and of the value.
        unsafe {
            rdkafka::bindings::rd_kafka_header_add(
                native,
                key.as_ptr().cast(),
                key.len() as isize,
                v,
                len,
            );
        }
    }
    headers
}
