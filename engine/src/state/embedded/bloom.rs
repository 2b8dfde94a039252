//! The bloom filter of a sorted file: a point lookup skips a file whose filter says the
//! key is absent, so most lookups of a missing key read no data block.
//!
//! The hash is part of the file format (a file written by one build is read by another),
//! so it is pinned here and by a test: FNV-1a over the key's bytes, then murmur3's 64-bit
//! finaliser to spread the low-entropy prefixes (key group, namespace) that every key
//! starts with.
//!
//! Filters are blocked (RocksDB's "fast local bloom"): the high half of the hash picks one
//! 64-byte block, and every probe falls in it, stepping through the low half by repeated
//! multiplication, so a lookup touches one cache line however large the filter is. Every
//! record that misses the memtables probes a filter per file it could be in. Filters of
//! files from earlier builds, whose probes spread over the whole filter (double hashing,
//! `h1 + i * h2` over the hash's two halves), are still read.
//!
//! ```text
//! blocked filter = bits (a whole number of 64-byte blocks) probes 0x80
//! classic filter = bits probes                                probes: 1..=30
//! ```

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

/// Bytes of one block of a blocked filter: a cache line.
const BLOCK_BYTES: usize = 64;
/// The last byte of a blocked filter (a classic filter's is its probe count, at most 30).
const BLOCKED_TAG: u8 = 0x80;
/// The most probes per key either layout takes.
const MAX_PROBES: u8 = 30;

/// How a filter's probes are laid out.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Layout {
    /// All of a key's probes in one block.
    Blocked,
    /// Probes anywhere in the filter (files written by earlier builds).
    Classic,
}

/// A filter over a set of keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bloom {
    bits: Vec<u8>,
    probes: u8,
    layout: Layout,
}

impl Bloom {
    /// A filter over keys with these hashes, with `bits_per_key` bits for each.
    pub fn build(hashes: &[u64], bits_per_key: u32) -> Bloom {
        let bytes = (hashes.len() as u64 * u64::from(bits_per_key)).div_ceil(8).max(1) as usize;
        let mut bloom = Bloom {
            bits: vec![0u8; bytes.next_multiple_of(BLOCK_BYTES)],
            probes: probes_for(bits_per_key),
            layout: Layout::Blocked,
        };
        for hash in hashes {
            bloom.set(*hash);
        }
        bloom
    }

    /// A filter of the classic layout, as earlier builds wrote them.
    #[cfg(test)]
    fn build_classic(hashes: &[u64], bits_per_key: u32) -> Bloom {
        let bit_count = (hashes.len() as u64 * u64::from(bits_per_key)).max(64);
        let bytes = bit_count.div_ceil(8) as usize;
        let mut bloom = Bloom { bits: vec![0u8; bytes], probes: probes_for(bits_per_key), layout: Layout::Classic };
        for hash in hashes {
            bloom.set(*hash);
        }
        bloom
    }

    fn set(&mut self, hash: u64) {
        let bit_count = self.bits.len() as u64 * 8;
        match self.layout {
            Layout::Blocked => {
                let base = self.block_of(hash);
                for bit in blocked_probes(hash, self.probes) {
                    self.bits[base + bit / 8] |= 1 << (bit % 8);
                }
            }
            Layout::Classic => {
                for bit in classic_probes(hash, self.probes, bit_count) {
                    self.bits[(bit / 8) as usize] |= 1 << (bit % 8);
                }
            }
        }
    }

    /// The offset of the block `hash` falls in (blocked layout): its high half, scaled to
    /// the block count without a division.
    fn block_of(&self, hash: u64) -> usize {
        let blocks = (self.bits.len() / BLOCK_BYTES) as u64;
        (((hash >> 32) * blocks) >> 32) as usize * BLOCK_BYTES
    }

    /// False means the key is certainly not in the set.
    pub fn may_contain(&self, hash: u64) -> bool {
        match self.layout {
            Layout::Blocked => {
                let block = &self.bits[self.block_of(hash)..][..BLOCK_BYTES];
                blocked_probes(hash, self.probes).all(|bit| block[bit / 8] & (1 << (bit % 8)) != 0)
            }
            Layout::Classic => {
                let bit_count = self.bits.len() as u64 * 8;
                classic_probes(hash, self.probes, bit_count)
                    .all(|bit| self.bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0)
            }
        }
    }

    /// The filter as stored (see the module's layouts).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bits.len() + 2);
        out.extend_from_slice(&self.bits);
        out.push(self.probes);
        if self.layout == Layout::Blocked {
            out.push(BLOCKED_TAG);
        }
        out
    }

    /// Reads a stored filter; `None` if it cannot be one.
    pub fn decode(bytes: &[u8]) -> Option<Bloom> {
        let (last, rest) = bytes.split_last()?;
        let (layout, probes, bits) = if *last == BLOCKED_TAG {
            let (probes, bits) = rest.split_last()?;
            if bits.len() % BLOCK_BYTES != 0 {
                return None;
            }
            (Layout::Blocked, *probes, bits)
        } else {
            (Layout::Classic, *last, rest)
        };
        if bits.is_empty() || probes == 0 || probes > MAX_PROBES {
            return None;
        }
        Some(Bloom { bits: bits.to_vec(), probes, layout })
    }

    /// The filter's size in memory.
    pub fn bytes(&self) -> usize {
        self.bits.len()
    }
}

/// ln 2 * bits per key probes minimise the false-positive rate.
fn probes_for(bits_per_key: u32) -> u8 {
    ((f64::from(bits_per_key) * std::f64::consts::LN_2).round() as u32).clamp(1, u32::from(MAX_PROBES)) as u8
}

/// Bit positions within a 512-bit block: the top 9 bits of the hash's low half, multiplied
/// by the golden ratio between probes.
fn blocked_probes(hash: u64, probes: u8) -> impl Iterator<Item = usize> {
    let mut h = hash as u32;
    (0..probes).map(move |_| {
        let bit = (h >> (32 - 9)) as usize;
        h = h.wrapping_mul(0x9e37_79b9);
        bit
    })
}

fn classic_probes(hash: u64, probes: u8, bit_count: u64) -> impl Iterator<Item = u64> {
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
        for bloom in [Bloom::build(&inserted, 10), Bloom::build_classic(&inserted, 10)] {
            assert!(inserted.iter().all(|h| bloom.may_contain(*h)), "a bloom filter never forgets a key");
            // Absent keys (the odd numbers): with 10 bits per key and 7 probes the theory says
            // 0.82% (a little more for the blocked layout); allow up to 2%.
            let absent = 100_000u64;
            let false_positives = (0..absent).filter(|i| bloom.may_contain(key_hash(&key(i * 2 + 1)))).count();
            let rate = false_positives as f64 / absent as f64;
            assert!(rate < 0.02, "{:?}: false-positive rate {rate}", bloom.layout);
            assert!(rate > 0.0, "a filter this size has some false positives: {rate}");
            assert_eq!(Bloom::decode(&bloom.encode()), Some(bloom));
        }
    }

    #[test]
    fn a_filter_of_an_earlier_build_still_reads() {
        // The classic layout as earlier builds stored it: bits, then the probe count.
        let hashes: Vec<u64> = (0..100u64).map(|i| key_hash(&key(i))).collect();
        let stored = Bloom::build_classic(&hashes, 10).encode();
        assert_eq!(stored.len(), 125 + 1);
        let bloom = Bloom::decode(&stored).expect("a classic filter decodes");
        assert_eq!(bloom.layout, Layout::Classic);
        assert!(hashes.iter().all(|h| bloom.may_contain(*h)));
    }

    #[test]
    fn a_corrupt_filter_does_not_decode() {
        assert_eq!(Bloom::decode(&[]), None);
        assert_eq!(Bloom::decode(&[7]), None);
        assert_eq!(Bloom::decode(&[1, 2, 0]), None);
        // Blocked: bits not a whole number of blocks, no bits, a bad probe count.
        assert_eq!(Bloom::decode(&[0, 0, 7, BLOCKED_TAG]), None);
        assert_eq!(Bloom::decode(&[7, BLOCKED_TAG]), None);
        assert_eq!(Bloom::decode(&[[0u8; 64].as_slice(), &[31, BLOCKED_TAG]].concat()), None);
    }
}
