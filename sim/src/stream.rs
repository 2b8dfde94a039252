//! Seeded random numbers for the harness: each fault's and each swarm draw's own stream, so that one draw never
//! shifts another's.

use std::time::Duration;

/// A fault's own random numbers: splitmix64 over a seed made of the run's seed and the fault.
#[derive(Clone, Debug)]
pub struct Stream(u64);

impl Stream {
    pub fn new(seed: u64, key: u64) -> Stream {
        let mut stream = Stream(seed ^ key.rotate_left(17) ^ 0x243f_6a88_85a3_08d3);
        stream.next_u64();
        stream
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `true` with probability `rate`.
    pub fn chance(&mut self, rate: f64) -> bool {
        rate > 0.0 && (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= rate
    }

    /// A duration drawn uniformly from `min ..= max`, to the millisecond.
    pub fn between(&mut self, min: Duration, max: Duration) -> Duration {
        let span_ms = max.saturating_sub(min).as_millis() as u64;
        min + Duration::from_millis(if span_ms == 0 { 0 } else { self.below(span_ms + 1) })
    }
}

/// 64-bit FNV-1a.
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}
