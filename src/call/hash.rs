//! The one stable hash: event ids, cache keys, vector-store point ids, A/B splits and the
//! simulated provider's behaviour all derive from it, so it must never change between releases.

/// FNV-1a over the parts, then a splitmix64 finaliser: stable across platforms and releases.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_and_separate_parts() {
        assert_eq!(stable_hash(&[b"abc"]), stable_hash(&[b"abc"]));
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
    }

    #[test]
    fn the_hash_of_a_known_input_never_changes() {
        // Event ids already on metering topics and point ids in vector stores depend on it.
        assert_eq!(stable_hash(&[b"sluice"]), 0xca35_2b3f_7c5e_e280);
    }
}
