//! Sharding a sweep over machines: which (scenario, seed) pairs `weir-sim run --shard I/N` runs.
//!
//! The rule: the pair (scenario `s`, seed `k`) belongs to shard `1 + (h(s) + k) mod N`, where `h(s)` is the
//! 64-bit FNV-1a hash of the scenario's name (its `name` key, not its path, which differs between checkouts)
//! reduced mod `N`. So:
//!
//! - the shards of a range partition it: every pair is run by exactly one shard;
//! - consecutive seeds of a scenario go round the shards, so each shard runs `⌊k/N⌋` or `⌈k/N⌉` of a scenario's
//!   `k` seeds, whatever the other scenarios are; the offset `h(s)` spreads the extra seeds of short ranges over
//!   different shards for different scenarios;
//! - a pair's shard depends on the scenario's name, the seed and `N` alone: adding or removing scenarios, or
//!   widening the seed range, moves no pair to another shard.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// Shard `index` (from 1) of `count`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

/// A `--shard` value that is not `I/N` with `1 <= I <= N`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("--shard: expected `I/N` with 1 <= I <= N (for example `2/8`), got `{given}`")]
pub struct BadShard {
    pub given: String,
}

impl FromStr for Shard {
    type Err = BadShard;

    fn from_str(text: &str) -> Result<Shard, BadShard> {
        let bad = || BadShard { given: text.to_string() };
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u64, u64) =
            (index.trim().parse().map_err(|_| bad())?, count.trim().parse().map_err(|_| bad())?);
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// 64-bit FNV-1a of `text`: stable across runs, builds and platforms.
fn fnv1a(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

impl Shard {
    /// The whole sweep as one shard.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Whether this shard runs `seed` of the scenario named `scenario`.
    pub fn owns(&self, scenario: &str, seed: u64) -> bool {
        (fnv1a(scenario) % self.count + seed % self.count) % self.count == self.index - 1
    }

    /// The seeds of `seeds` this shard runs for the scenario named `scenario`.
    pub fn seeds(&self, scenario: &str, seeds: Range<u64>) -> SeedShare {
        let n = self.count;
        // The residue a seed needs: (h + seed) ≡ index - 1 (mod n).
        let residue = (self.index - 1 + n - fnv1a(scenario) % n) % n;
        let skip = (residue + n - seeds.start % n) % n;
        SeedShare { first: seeds.start.saturating_add(skip), end: seeds.end, step: n }
    }
}

/// Seeds `first, first + step, ...` below `end`: one scenario's share of a seed range.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SeedShare {
    first: u64,
    end: u64,
    step: u64,
}

impl SeedShare {
    /// Every seed of `seeds`.
    pub fn all(seeds: Range<u64>) -> SeedShare {
        SeedShare { first: seeds.start, end: seeds.end, step: 1 }
    }

    pub fn len(&self) -> u64 {
        if self.first >= self.end { 0 } else { (self.end - self.first - 1) / self.step + 1 }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `index`-th seed (below [`SeedShare::len`]).
    pub fn nth(&self, index: u64) -> u64 {
        assert!(index < self.len(), "seed {index} of a share of {}", self.len());
        self.first + index * self.step
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len()).map(|index| self.nth(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shards_parse_from_i_of_n() {
        assert_eq!("3/8".parse(), Ok(Shard { index: 3, count: 8 }));
        assert_eq!("1/1".parse::<Shard>().unwrap().to_string(), "1/1");
        for bad in ["0/4", "5/4", "4", "a/4", "1/0", "", "2/3/4"] {
            assert_eq!(bad.parse::<Shard>(), Err(BadShard { given: bad.to_string() }), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn the_shards_partition_a_range_evenly_per_scenario(
            count in 1u64..9, start in 0u64..1000, length in 1u64..300, name in "[a-z-]{1,20}"
        ) {
            let seeds = start..start + length;
            let shards: Vec<Shard> = (1..=count).map(|index| Shard { index, count }).collect();
            let shares: Vec<Vec<u64>> = shards.iter().map(|s| s.seeds(&name, seeds.clone()).iter().collect()).collect();
            // Each share is what `owns` says, and every seed is in exactly one.
            for (shard, share) in shards.iter().zip(&shares) {
                let owned: Vec<u64> = seeds.clone().filter(|&seed| shard.owns(&name, seed)).collect();
                prop_assert_eq!(&owned, share);
            }
            let mut all: Vec<u64> = shares.iter().flatten().copied().collect();
            all.sort_unstable();
            prop_assert_eq!(all, seeds.clone().collect::<Vec<_>>());
            let (most, least) = (shares.iter().map(Vec::len).max().unwrap(), shares.iter().map(Vec::len).min().unwrap());
            prop_assert!(most - least <= 1, "{:?}", shares.iter().map(Vec::len).collect::<Vec<_>>());
        }

        #[test]
        fn widening_the_range_moves_no_seed_to_another_shard(count in 1u64..9, end in 1u64..500, more in 0u64..500) {
            for index in 1..=count {
                let shard = Shard { index, count };
                let narrow: Vec<u64> = shard.seeds("job-manager-crash", 0..end).iter().collect();
                let wide: Vec<u64> = shard.seeds("job-manager-crash", 0..end + more).iter().filter(|&s| s < end).collect();
                prop_assert_eq!(narrow, wide);
            }
        }
    }

    #[test]
    fn a_share_at_the_top_of_the_seed_space_does_not_wrap() {
        let share = Shard { index: 2, count: 3 }.seeds("x", u64::MAX - 10..u64::MAX);
        let seeds: Vec<u64> = share.iter().collect();
        assert!(seeds.iter().all(|s| (u64::MAX - 10..u64::MAX).contains(s)) && !seeds.is_empty(), "{seeds:?}");
        assert_eq!(SeedShare::all(5..5).len(), 0);
    }

    #[test]
    fn the_hash_of_a_name_is_pinned() {
        // Shards must agree between machines and builds: the hash is FNV-1a and never changes.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
