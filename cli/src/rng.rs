//! A seeded random number generator and size distributions, from the
//! `rand` and `rand_distr` crates.
//!
//! Workloads are seeded, so a single-threaded workload does exactly the same
//! allocations under every allocator and returns the same checksum.
//! Distributions that need `powf` are sampled once into a [`SizeTable`]
//! before the timed loop, so drawing a size in the loop costs one load.

use rand::{RngCore as _, SeedableRng as _};
use rand_distr::{Distribution as _, Pareto};

/// `rand`'s small fast generator (xoshiro256++); the workloads draw from it
/// with `rand::Rng`'s methods.
pub type Rng = rand::rngs::SmallRng;

/// What a workload that draws random numbers imports: the generator, its
/// constructors, `rand`'s drawing methods and the size tables.
pub mod prelude {
    pub use super::{Rng, Seeded as _, SizeTable};
    pub use rand::{Rng as _, RngCore as _};
}

/// The workloads' two ways to make a generator.
pub trait Seeded {
    /// A generator for `seed` (mixed, so nearby seeds give unrelated streams).
    fn new(seed: u64) -> Self;
    /// A generator for one of several threads or rounds, derived from a base seed.
    fn derive(seed: u64, stream: u64) -> Self;
}

impl Seeded for Rng {
    fn new(seed: u64) -> Self {
        Rng::seed_from_u64(seed)
    }

    fn derive(seed: u64, stream: u64) -> Self {
        Rng::seed_from_u64(seed ^ stream.wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }
}

/// Sizes drawn ahead of time from a distribution.
pub struct SizeTable {
    sizes: Vec<u32>,
    mask: usize,
}

impl SizeTable {
    /// `2^log2_len` sizes, each drawn with `sample`.
    pub fn new(log2_len: u32, rng: &mut Rng, mut sample: impl FnMut(&mut Rng) -> usize) -> Self {
        let len = 1usize << log2_len;
        let sizes = (0..len).map(|_| u32::try_from(sample(rng)).unwrap_or(u32::MAX)).collect();
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

/// A size from the Pareto distribution with scale `xm` and shape `alpha`,
/// truncated at `hi` (draws above it are drawn again).
pub fn pareto(rng: &mut Rng, xm: usize, alpha: f64, hi: usize) -> usize {
    let Ok(d) = Pareto::new(xm as f64, alpha) else {
        return xm;
    };
    loop {
        let s = d.sample(rng);
        if s <= hi as f64 {
            return (s as usize).clamp(xm, hi);
        }
    }
}

/// A size from the inverse-square distribution on `[lo, hi]` (density
/// proportional to `1/s²`): the Pareto distribution of shape 1, truncated.
pub fn inverse_square(rng: &mut Rng, lo: usize, hi: usize) -> usize {
    pareto(rng, lo, 1.0, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (Rng::derive(7, 3), Rng::derive(7, 3));
        assert!((0..1000).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(Rng::derive(7, 3).next_u64(), Rng::derive(7, 4).next_u64());
    }

    #[test]
    fn distributions_respect_bounds_and_shape() {
        let mut r = Rng::new(5);
        let inv = SizeTable::new(14, &mut r, |r| inverse_square(r, 4, 32 << 10));
        assert!(inv.sizes.iter().all(|&s| (4..=32 << 10).contains(&s)));
        // Mean of 1/s² on [4, 32768] is about 4 ln(8192), 36 bytes.
        assert!((20.0..60.0).contains(&inv.mean()), "{}", inv.mean());
        let par = SizeTable::new(14, &mut r, |r| pareto(r, 16, 1.0, 1024));
        assert!(par.sizes.iter().all(|&s| (16..=1024).contains(&s)));
        assert!(par.sizes.iter().filter(|&&s| s < 64).count() > par.sizes.len() / 2);
    }
}
