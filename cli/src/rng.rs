//! A small seeded random number generator and size distributions.
//!
//! Workloads are seeded, so a single-threaded workload does exactly the same
//! allocations under every allocator and returns the same checksum.
//! Distributions that need `powf` are sampled once into a [`SizeTable`]
//! before the timed loop, so drawing a size in the loop costs one load.

/// SplitMix64: fast, small state, good enough statistical quality for
/// choosing sizes and slots.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        // Decorrelate nearby seeds.
        rng.next_u64();
        rng
    }

    /// A generator for one of several threads or rounds, derived from a base seed.
    pub fn derive(seed: u64, stream: u64) -> Self {
        Rng::new(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `num / den`.
    #[inline]
    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }
}

/// Sizes drawn ahead of time from a distribution.
pub struct SizeTable {
    sizes: Vec<u32>,
    mask: usize,
}

impl SizeTable {
    /// `2^log2_len` sizes drawn with `sample` from uniform numbers in `[0, 1)`.
    pub fn new(log2_len: u32, rng: &mut Rng, mut sample: impl FnMut(f64) -> usize) -> Self {
        let len = 1usize << log2_len;
        let sizes = (0..len).map(|_| u32::try_from(sample(rng.unit())).unwrap_or(u32::MAX)).collect();
        SizeTable { sizes, mask: len - 1 }
    }

    #[inline]
    pub fn pick(&self, rng: &mut Rng) -> usize {
        self.sizes[rng.next_u64() as usize & self.mask] as usize
    }

    /// The mean size, for documentation and tests.
    #[cfg(test)]
    pub fn mean(&self) -> f64 {
        self.sizes.iter().map(|&s| f64::from(s)).sum::<f64>() / self.sizes.len() as f64
    }
}

/// Inverse-square distribution on `[lo, hi]` (density proportional to
/// `1/s²`), by inverting its CDF at `u`.
pub fn inverse_square(u: f64, lo: usize, hi: usize) -> usize {
    let (a, b) = (1.0 / lo as f64, 1.0 / hi as f64);
    let s = 1.0 / (a - u * (a - b));
    (s as usize).clamp(lo, hi)
}

/// Pareto distribution with scale `xm` and shape `alpha`, truncated at `hi`,
/// by inverting the truncated CDF at `u`.
pub fn pareto(u: f64, xm: usize, alpha: f64, hi: usize) -> usize {
    let tail = (xm as f64 / hi as f64).powf(alpha);
    let s = xm as f64 / (1.0 - u * (1.0 - tail)).powf(1.0 / alpha);
    (s as usize).clamp(xm, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range() {
        let mut r = Rng::new(1);
        for n in 1..100 {
            for _ in 0..100 {
                assert!(r.below(n) < n);
            }
        }
    }

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (Rng::derive(7, 3), Rng::derive(7, 3));
        assert!((0..1000).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(Rng::derive(7, 3).next_u64(), Rng::derive(7, 4).next_u64());
    }

    #[test]
    fn distributions_respect_bounds_and_shape() {
        let mut r = Rng::new(5);
        let inv = SizeTable::new(14, &mut r, |u| inverse_square(u, 4, 32 << 10));
        assert!(inv.sizes.iter().all(|&s| (4..=32 << 10).contains(&s)));
        // Mean of 1/s² on [4, 32768] is about 4 ln(8192), 36 bytes.
        assert!((20.0..60.0).contains(&inv.mean()), "{}", inv.mean());
        let par = SizeTable::new(14, &mut r, |u| pareto(u, 16, 1.0, 1024));
        assert!(par.sizes.iter().all(|&s| (16..=1024).contains(&s)));
        assert!(par.sizes.iter().filter(|&&s| s < 64).count() > par.sizes.len() / 2);
    }
}
