//! The bloom filter of a sorted file: a point lookup skips a file whose filter says the
//! key is absent, so most lookups of a missing key read no data block.
//!
//! The hash is part of the file format (a file written by one build is read by another),
//! so it is pinned here and by a test: FNV-1a over the key's bytes, then murmur3's 64-bit
//! finaliser to spread the low-entropy prefixes (key group, namespace) that every key
//! starts with. Probes use double hashing, `h1 + i * h2` over the two 32-bit halves.

/// The hash of a stored key, as the filter uses it.
pub fn key_hash(key: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// A filter over a set of keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    bits: Vec<u8>,
    probes: u8,
}

impl Bloom {
    /// A filter over keys with these hashes, with `bits_per_key` bits for each.
    pub fn build(hashes: &[u64], bits_per_key: u32) -> Bloom {
        // ln 2 * bits per key probes minimise the false-positive rate.
        let probes = ((f64::from(bits_per_key) * std::f64::consts::LN_2).round() as u32).clamp(1, 30) as u8;
        let bit_count = (hashes.len() as u64 * u64::from(bits_per_key)).max(64);
        let mut bits = vec![0u8; bit_count.div_ceil(8) as usize];
        let bit_count = bits.len() as u64 * 8;
        for hash in hashes {
            for bit in probe_bits(*hash, probes, bit_count) {
                bits[(bit / 8) as usize] |= 1 << (bit % 8);
            }
        }
        Bloom { bits, probes }
    }

    /// False means the key is certainly not in the set.
    pub fn may_contain(&self, hash: u64) -> bool {
        let bit_count = self.bits.len() as u64 * 8;
        probe_bits(hash, self.probes, bit_count).all(|bit| self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
    }

    /// The filter as stored: its bits, then the probe count.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.bits.clone();
        out.push(self.probes);
        out
    }

    /// Reads a stored filter; `None` if it cannot be one.
    pub fn decode(bytes: &[u8]) -> Option<Bloom> {
        let (probes, bits) = bytes.split_last()?;
        if bits.is_empty() || *probes == 0 || *probes > 30 {
            return None;
        }
        Some(Bloom { bits: bits.to_vec(), probes: *probes })
    }

    /// The filter's size in memory.
    pub fn bytes(&self) -> usize {
        self.bits.len()
    }
}

fn probe_bits(hash: u64, probes: u8, bit_count: u64) -> impl Iterator<Item = u64> {
    let h1 = hash & 0xffff_ffff;
    let h2 = (hash >> 32) | 1;
    (0..u64::from(probes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % bit_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_pinned() {
        // Files written by one build are read by another: this hash never changes.
        assert_eq!(key_hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(key_hash(b"weir"), 0x928e_bc5f_622c_ac17);
        assert_eq!(key_hash(&[0, 1, 0, 0, 5]), 0xf312_227a_2685_77cb);
    }

    fn key(i: u64) -> Vec<u8> {
        // Keys as the store writes them: a key group and namespace prefix, then a postcard
        // encoding, so that the filter is tested on realistic low-entropy prefixes.
        let mut key = vec![0, (i % 7) as u8, 0, 1];
        key.extend(postcard::to_stdvec(&i).unwrap());
        key
    }

    #[test]
    fn no_false_negatives_and_a_false_positive_rate_near_the_theory() {
        let inserted: Vec<u64> = (0..10_000u64).map(|i| key_hash(&key(i * 2))).collect();
        let bloom = Bloom::build(&inserted, 10);
        assert!(inserted.iter().all(|h| bloom.may_contain(*h)), "a bloom filter never forgets a key");
        // Absent keys (the odd numbers): with 10 bits per key and 7 probes the theory says
        // 0.82%; allow up to 2%.
        let absent = 100_000u64;
        let false_positives = (0..absent).filter(|i| bloom.may_contain(key_hash(&key(i * 2 + 1)))).count();
        let rate = false_positives as f64 / absent as f64;
        assert!(rate < 0.02, "false-positive rate {rate}");
        assert!(rate > 0.0, "a filter this size has some false positives: {rate}");
        assert_eq!(Bloom::decode(&bloom.encode()), Some(bloom));
    }

    #[test]
    fn a_corrupt_filter_does_not_decode() {
        assert_eq!(Bloom::decode(&[]), None);
        assert_eq!(Bloom::decode(&[7]), None);
        assert_eq!(Bloom::decode(&[1, 2, 0]), None);
    }
}
