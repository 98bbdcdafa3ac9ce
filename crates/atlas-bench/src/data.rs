//! Deterministic, realistic data: profile-shaped and grid-shaped fields.

#![allow(clippy::many_single_char_names)] // formulas read best with their usual letters

/// xorshift64* generator.
pub struct Rng(pub u64);

impl Rng {
    /// Next raw value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// A temperature profile of `n` levels for dataset `i` at version `v`: smooth
/// decay with depth, small noise, rounded to 0.001 like instrument data.
pub fn profile(i: u64, v: u64, n: usize) -> Vec<f32> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i.wrapping_mul(0x1000_0000_01b3) + v));
    let surface = 25.0 - 20.0 * ((i % 97) as f64 / 97.0) + v as f64 * 0.01;
    (0..n)
        .map(|k| {
            let z = 5.0 + 20.0 * k as f64;
            let t = 2.0 + (surface - 2.0) * (-z / 600.0).exp() + rng.range(-0.01, 0.01);
            ((t * 1000.0).round() / 1000.0) as f32
        })
        .collect()
}

/// The first version of W1's profiles, made before a clock starts: W1 times
/// each system's writes, not this generator (which was about a quarter of
/// ATLAS's instructions in W1 when it ran inside the clock).
pub struct Profiles {
    datasets: u64,
    per_dataset: usize,
    levels: usize,
    cells: Vec<f32>,
}

impl Profiles {
    /// Datasets `0..datasets`, `per_dataset` profiles of `levels` cells each:
    /// profile `k` of dataset `i` is `profile(i * per_dataset + k, 0, levels)`.
    pub fn new(datasets: u64, per_dataset: usize, levels: usize) -> Profiles {
        let total = datasets as usize * per_dataset;
        let mut cells = Vec::with_capacity(total * levels);
        for j in 0..total as u64 {
            cells.extend(profile(j, 0, levels));
        }
        Profiles {
            datasets,
            per_dataset,
            levels,
            cells,
        }
    }

    /// The number of datasets.
    pub fn datasets(&self) -> u64 {
        self.datasets
    }

    /// Profile `k` of dataset `i`.
    pub fn get(&self, i: u64, k: usize) -> &[f32] {
        let at = (i as usize * self.per_dataset + k) * self.levels;
        &self.cells[at..at + self.levels]
    }
}

/// A smooth 2-D field (lat × lon) for dataset `i`.
pub fn grid(i: u64, n_lat: usize, n_lon: usize) -> Vec<f32> {
    let mut rng = Rng(0x51_7cc1_b727_220a ^ i);
    let mut v = Vec::with_capacity(n_lat * n_lon);
    for a in 0..n_lat {
        let lat = -90.0 + 180.0 * (a as f64 + 0.5) / n_lat as f64;
        for b in 0..n_lon {
            let lon = 360.0 * b as f64 / n_lon as f64;
            let t = 28.0 * lat.to_radians().cos().powi(2) - 1.0
                + 1.5 * (lon.to_radians() * 2.0 + i as f64).sin()
                + rng.range(-0.02, 0.02);
            v.push(((t * 1000.0).round() / 1000.0) as f32);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::{profile, Profiles};

    /// The profiles made ahead are the generator's, each at its place.
    #[test]
    fn profiles_made_ahead_equal_the_generator() {
        let p = Profiles::new(7, 3, 50);
        assert_eq!(p.datasets(), 7);
        for i in 0..7 {
            for k in 0..3 {
                assert_eq!(p.get(i, k), profile(i * 3 + k as u64, 0, 50).as_slice());
            }
        }
    }
}
