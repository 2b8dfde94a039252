//! The store's key layout: key group, then namespace (a registered state's id, or the
//! namespace of restored blobs not yet read), then the user key's stable encoding.
//!
//! ```text
//! [key group: u16 big-endian][namespace: u16 big-endian][postcard(user key) | state name]
//! ```
//!
//! Big-endian fixed-width prefixes sort as their numbers do, so a key group is one
//! contiguous key range, a state within a key group is one contiguous sub-range, and a
//! key-group range (a subtask's share, or what a rescale keeps) is one contiguous range.
//! Key groups are below 2^15 (Flink's max parallelism bound), so two bytes hold them and
//! every key starts with a byte below 0x80.

use crate::ids::KeyGroup;
use crate::keygroup::{KeyGroupRange, MAX_PARALLELISM_UPPER_BOUND};

/// Bytes of the key-group prefix.
pub const KEY_GROUP_BYTES: usize = 2;
/// Bytes of the key-group and namespace prefix.
pub const PREFIX_BYTES: usize = 4;

/// The namespace of a key: which state it belongs to.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Namespace(pub u16);

impl Namespace {
    /// Restored per-state blobs of a key group that no access has unpacked yet, keyed by
    /// state name (a state restored but never registered stays here, and is carried into
    /// every snapshot as it came).
    pub const RESTORED: Namespace = Namespace(u16::MAX);

    /// The namespace of the registered state with this index.
    pub fn of_state(index: usize) -> Namespace {
        assert!(index < usize::from(Namespace::RESTORED.0), "more than {} keyed states in one operator", u16::MAX);
        Namespace(index as u16)
    }
}

fn key_group_bytes(key_group: u32) -> [u8; KEY_GROUP_BYTES] {
    assert!(key_group <= MAX_PARALLELISM_UPPER_BOUND, "key group {key_group} beyond the max parallelism bound");
    (key_group as u16).to_be_bytes()
}

/// Writes the prefix of `namespace` in `key_group` into `out` (cleared first).
pub fn start_key(out: &mut Vec<u8>, key_group: KeyGroup, namespace: Namespace) {
    assert!(key_group.0 < MAX_PARALLELISM_UPPER_BOUND, "key group {key_group} beyond the max parallelism bound");
    out.clear();
    out.extend_from_slice(&key_group_bytes(key_group.0));
    out.extend_from_slice(&namespace.0.to_be_bytes());
}

/// The key range `[start, end)` of one namespace within one key group.
pub fn namespace_range(key_group: KeyGroup, namespace: Namespace) -> (Vec<u8>, Vec<u8>) {
    let mut start = Vec::with_capacity(PREFIX_BYTES);
    start_key(&mut start, key_group, namespace);
    let end = match namespace.0.checked_add(1) {
        Some(next) => {
            let mut end = Vec::with_capacity(PREFIX_BYTES);
            start_key(&mut end, key_group, Namespace(next));
            end
        }
        None => key_group_bytes(key_group.0 + 1).to_vec(),
    };
    (start, end)
}

/// The key range `[start, end)` of a key-group range.
pub fn key_group_range_bounds(range: KeyGroupRange) -> (Vec<u8>, Vec<u8>) {
    (key_group_bytes(range.start).to_vec(), key_group_bytes(range.end).to_vec())
}

/// The order of stored keys, their bytes' (as `<[u8]>::cmp`), compared eight bytes at a
/// time as big-endian words, the last one zero-padded: the store's keys are short, and this
/// is a few integer comparisons where `memcmp` is a call. Words that differ order as the
/// bytes do (a key that ran out is padded with zeros, and the other's differing byte is
/// then higher, as a prefix sorts first); once the shorter key is used up with every word
/// equal, it is a prefix of the other and the lengths decide.
pub fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let shorter = a.len().min(b.len());
    let mut at = 0;
    while at < shorter {
        let (x, y) = (word_at(a, at), word_at(b, at));
        if x != y {
            return x.cmp(&y);
        }
        at += 8;
    }
    a.len().cmp(&b.len())
}

/// Bytes `at..at + 8` of `key` as a big-endian word, zeros past its end.
fn word_at(key: &[u8], at: usize) -> u64 {
    match key.get(at..at + 8) {
        Some(word) => u64::from_be_bytes(word.try_into().expect("eight bytes")),
        None => {
            let mut word = [0u8; 8];
            word[..key.len() - at].copy_from_slice(&key[at..]);
            u64::from_be_bytes(word)
        }
    }
}

/// A stored key taken apart.
pub struct DecodedKey<'a> {
    pub key_group: KeyGroup,
    pub namespace: Namespace,
    /// The user key's encoding, or a restored blob's state name.
    pub rest: &'a [u8],
}

/// Takes a stored key apart; `None` if it is shorter than the prefix.
pub fn decode(key: &[u8]) -> Option<DecodedKey<'_>> {
    let group = key.get(..KEY_GROUP_BYTES)?;
    let namespace = key.get(KEY_GROUP_BYTES..PREFIX_BYTES)?;
    Some(DecodedKey {
        key_group: KeyGroup(u32::from(u16::from_be_bytes([group[0], group[1]]))),
        namespace: Namespace(u16::from_be_bytes([namespace[0], namespace[1]])),
        rest: &key[PREFIX_BYTES..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(group: u32, namespace: u16, user: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        start_key(&mut out, KeyGroup(group), Namespace(namespace));
        out.extend_from_slice(user);
        out
    }

    proptest! {
        #[test]
        fn keys_compare_as_their_bytes(
            // Few distinct bytes, so that shared prefixes, trailing zeros and word boundaries come up.
            a in proptest::collection::vec(0u8..3, 0..30),
            b in proptest::collection::vec(0u8..3, 0..30),
        ) {
            prop_assert_eq!(compare(&a, &b), a.cmp(&b));
            prop_assert_eq!(compare(&a, &a), std::cmp::Ordering::Equal);
        }

        #[test]
        fn keys_sort_by_key_group_then_namespace_then_user_key(
            a in (0u32..32768, any::<u16>(), proptest::collection::vec(any::<u8>(), 0..6)),
            b in (0u32..32768, any::<u16>(), proptest::collection::vec(any::<u8>(), 0..6)),
        ) {
            prop_assert_eq!(key(a.0, a.1, &a.2).cmp(&key(b.0, b.1, &b.2)), a.cmp(&b));
        }

        #[test]
        fn a_key_group_range_is_exactly_the_keys_of_its_groups(
            group in 0u32..32768, namespace in any::<u16>(), user in proptest::collection::vec(any::<u8>(), 0..6),
            start in 0u32..32768, len in 0u32..100,
        ) {
            let range = KeyGroupRange { start, end: (start + len).min(32768) };
            let (low, high) = key_group_range_bounds(range);
            let k = key(group, namespace, &user);
            prop_assert_eq!(low <= k && k < high, range.contains(KeyGroup(group)));
            let (low, high) = namespace_range(KeyGroup(start), Namespace(namespace));
            prop_assert_eq!(low <= k && k < high, group == start);
            let decoded = decode(&k).unwrap();
            prop_assert_eq!((decoded.key_group, decoded.namespace, decoded.rest), (KeyGroup(group), Namespace(namespace), &user[..]));
        }
    }
}
