//! `atlas demo`: builds a realistic sample store.
//!
//! Ocean profiles shaped like Argo float cycles (pressure, temperature and
//! salinity on 60–120 depth levels, CF-style attributes, a few missing values
//! as the fill value), plus monthly gridded sea-surface-temperature fields with
//! a land mask. Deterministic: the same arguments build the same store.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use atlas::{Atlas, Attr, FillValue, StoreConfig, TimestampNs};
use indexmap::IndexMap;
use ndarray::{Array1, Array2};

use crate::util;

/// Argo's fill value for missing measurements.
const ARGO_FILL: f32 = 99_999.0;
/// Fill value of land cells in the gridded fields.
const LAND_FILL: f32 = -9_999.0;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

fn round3(v: f64) -> f32 {
    ((v * 1000.0).round() / 1000.0) as f32
}

fn s(v: &str) -> Attr {
    Attr::String(v.to_owned())
}

/// One synthetic profile.
struct Profile {
    pres: Vec<f32>,
    temp: Vec<f32>,
    psal: Vec<f32>,
}

fn profile(rng: &mut Rng, lat: f64) -> Profile {
    let n = 60 + (rng.next_u64() % 61) as usize;
    let surface = 28.0 - 0.32 * lat.abs() + rng.range(-0.5, 0.5);
    let mut pres = Vec::with_capacity(n);
    let mut p = 5.0;
    for i in 0..n {
        pres.push(round3(p));
        p += if i < 20 {
            5.0
        } else if i < 50 {
            25.0
        } else {
            50.0
        };
    }
    let mut temp: Vec<f32> = pres
        .iter()
        .map(|&z| {
            let z = f64::from(z);
            round3(2.0 + (surface - 2.0) * (-z / 600.0).exp() + rng.range(-0.01, 0.01))
        })
        .collect();
    let mut psal: Vec<f32> = pres
        .iter()
        .map(|&z| round3(34.4 + 0.6 * (-f64::from(z) / 400.0).exp() + rng.range(-0.005, 0.005)))
        .collect();
    // About 1% of measurements missing, as in real data.
    for i in 0..n {
        if rng.unit() < 0.01 {
            temp[i] = ARGO_FILL;
        }
        if rng.unit() < 0.01 {
            psal[i] = ARGO_FILL;
        }
    }
    Profile { pres, temp, psal }
}

/// The profile arrays' names and attributes, built once: every profile's
/// arrays share them (as a bulk import does), instead of each dataset
/// holding its own copies.
fn profile_array_attrs() -> Vec<(&'static str, Arc<IndexMap<String, Attr>>)> {
    let specs = [
        (
            "PRES",
            "sea_water_pressure",
            "Sea water pressure, equals 0 at sea-level",
            "decibar",
            [0.0, 12_000.0],
        ),
        (
            "TEMP",
            "sea_water_temperature",
            "Sea temperature in-situ ITS-90 scale",
            "degree_Celsius",
            [-2.5, 40.0],
        ),
        (
            "PSAL",
            "sea_water_salinity",
            "Practical salinity",
            "psu",
            [2.0, 41.0],
        ),
    ];
    specs
        .into_iter()
        .map(|(name, std_name, long, units, range)| {
            let attrs = IndexMap::from([
                ("standard_name".to_owned(), s(std_name)),
                ("long_name".to_owned(), s(long)),
                ("units".to_owned(), s(units)),
                ("valid_range".to_owned(), Attr::Float64List(range.to_vec())),
            ]);
            (name, Arc::new(attrs))
        })
        .collect()
}

async fn define_profile_arrays(
    ds: &atlas::DatasetView,
    n: u64,
    arrays: &[(&'static str, Arc<IndexMap<String, Attr>>)],
) -> Result<()> {
    for (name, attrs) in arrays {
        ds.define_array::<f32>(
            name,
            vec!["N_LEVELS".into()],
            vec![n],
            None,
            Some(FillValue::Float32(ARGO_FILL)),
        )
        .await?;
        ds.set_array_attributes(name, Arc::clone(attrs))?;
    }
    Ok(())
}

async fn add_grid(store: &Atlas, month: usize, rng: &mut Rng) -> Result<u64> {
    let (n_lat, n_lon) = (180usize, 360usize);
    let name = format!("sst_{}_{:02}", 2024 + month / 12, month % 12 + 1);
    let ds = store.create_dataset(&name).await?;
    ds.set_attribute(
        "title",
        s("Monthly mean sea surface temperature (synthetic)"),
    )?;
    ds.set_attribute("Conventions", s("CF-1.10"))?;
    let days = 19_723 + 30 * month as i64; // 2024-01-01 + months
    ds.set_attribute(
        "time",
        Attr::Timestamp(TimestampNs(days * 86_400_000_000_000)),
    )?;
    let lat = Array1::from_iter((0..n_lat).map(|i| -89.5 + i as f64));
    let lon = Array1::from_iter((0..n_lon).map(|j| -179.5 + j as f64));
    ds.define_array::<f64>("lat", vec!["lat".into()], vec![n_lat as u64], None, None)
        .await?;
    ds.set_array_attribute("lat", "units", s("degrees_north"))?;
    ds.write_array("lat", vec![0], lat.view().into_dyn())
        .await?;
    ds.define_array::<f64>("lon", vec!["lon".into()], vec![n_lon as u64], None, None)
        .await?;
    ds.set_array_attribute("lon", "units", s("degrees_east"))?;
    ds.write_array("lon", vec![0], lon.view().into_dyn())
        .await?;
    let phase = month as f64 / 12.0 * std::f64::consts::TAU;
    let sst = Array2::from_shape_fn((n_lat, n_lon), |(i, j)| {
        let la = lat[i];
        let lo = lon[j];
        // A crude land mask: two blobs.
        let land = ((la - 45.0).powi(2) + (lo - 90.0).powi(2) < 900.0)
            || ((la + 15.0).powi(2) + (lo + 60.0).powi(2) < 400.0);
        if land {
            LAND_FILL
        } else {
            let seasonal = 2.0 * (phase + la.to_radians()).sin();
            round3(
                28.0 * la.to_radians().cos().powi(2) - 1.0 + seasonal + 0.02 * rng.range(-1.0, 1.0),
            )
        }
    });
    ds.define_array::<f32>(
        "sst",
        vec!["lat".into(), "lon".into()],
        vec![n_lat as u64, n_lon as u64],
        Some(vec![90, 180]),
        Some(FillValue::Float32(LAND_FILL)),
    )
    .await?;
    ds.set_array_attribute("sst", "standard_name", s("sea_surface_temperature"))?;
    ds.set_array_attribute("sst", "units", s("degree_Celsius"))?;
    ds.write_array("sst", vec![0, 0], sst.view().into_dyn())
        .await?;
    Ok(((n_lat + n_lon) * 8 + n_lat * n_lon * 4) as u64)
}

/// Datasets per commit: the demo commits in batches so its memory stays
/// bounded whatever `--datasets` asks for.
const BATCH: usize = 20_000;

/// Builds the demo store in `dir`.
pub async fn run(dir: &Path, n_profiles: usize, n_grids: usize, quiet: bool) -> Result<ExitCode> {
    let t0 = Instant::now();
    let store = match Atlas::create(&crate::util::location(dir), StoreConfig::default()).await {
        Ok(s) => s,
        Err(e @ atlas::Error::StoreExists { .. }) => {
            return Err(anyhow::Error::new(e).context(format!(
                "the demo builds a new store; remove {0} or pass another directory",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("cannot create a store in {}", dir.display())));
        }
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pb = util::progress((n_profiles + n_grids) as u64, "ingest", quiet);
    let mut raw = 0u64;
    let n_floats = n_profiles.div_ceil(200).max(1);
    let mut t_flush = std::time::Duration::ZERO;
    let profile_arrays = profile_array_attrs();
    for k in 0..n_profiles {
        if k > 0 && k % BATCH == 0 {
            let t = Instant::now();
            store.flush().await?;
            t_flush += t.elapsed();
        }
        let float = 6_900_001 + (k % n_floats);
        let cycle = k / n_floats + 1;
        let name = format!("argo_{float}_{cycle:03}");
        // Each float drifts slowly from its own starting point.
        let base_lat = -60.0 + 120.0 * ((float as f64 * 0.618_034) % 1.0);
        let base_lon = -180.0 + 360.0 * ((float as f64 * 0.414_214) % 1.0);
        let lat = (base_lat + 0.05 * cycle as f64 + rng.range(-0.02, 0.02)).clamp(-89.0, 89.0);
        let lon = base_lon + 0.08 * cycle as f64 + rng.range(-0.02, 0.02);
        let p = profile(&mut rng, lat);
        let n = p.pres.len() as u64;
        let ds = store.create_dataset(&name).await?;
        ds.set_attribute("title", s("Argo float vertical profile (synthetic)"))?;
        ds.set_attribute("platform_number", s(&float.to_string()))?;
        ds.set_attribute("cycle_number", Attr::Int64(cycle as i64))?;
        // 2020-01-01 plus ten days per cycle.
        let t = 1_577_836_800i64 + cycle as i64 * 864_000 + (k % n_floats) as i64 * 3_600;
        ds.set_attribute("time", Attr::Timestamp(TimestampNs(t * 1_000_000_000)))?;
        ds.set_attribute("latitude", Attr::Float64(lat))?;
        ds.set_attribute("longitude", Attr::Float64(lon))?;
        ds.set_attribute(
            "data_mode",
            s(if cycle.is_multiple_of(7) { "D" } else { "R" }),
        )?;
        define_profile_arrays(&ds, n, &profile_arrays).await?;
        for (array, values) in [("PRES", p.pres), ("TEMP", p.temp), ("PSAL", p.psal)] {
            raw += values.len() as u64 * 4;
            ds.write_array(array, vec![0], Array1::from(values).view().into_dyn())
                .await?;
        }
        pb.inc(1);
    }
    for m in 0..n_grids {
        raw += add_grid(&store, m, &mut rng).await?;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let t1 = Instant::now();
    store.flush().await?;
    t_flush += t1.elapsed();
    let t_ingest = t0.elapsed().saturating_sub(t_flush);
    let total = t0.elapsed();
    let on_disk = util::disk_usage(dir);
    let arrays = store.list_arrays();
    let c = store.compression();
    let n = n_profiles + n_grids;
    say!("built demo store {}", dir.display());
    say!("  {n_profiles} ocean profiles (PRES, TEMP, PSAL on 60-120 levels) + {n_grids} gridded SST fields");
    say!(
        "  {} datasets, {} arrays: {}",
        n,
        arrays.len(),
        arrays.join(", ")
    );
    say!(
        "  {} of values -> {} on disk (codec {}{}, ratio {:.2})",
        util::bytes(raw),
        util::bytes(on_disk),
        c.codec,
        if c.shuffle { "+shuffle" } else { "" },
        raw as f64 / on_disk.max(1) as f64
    );
    say!(
        "  ingest {}, flush {}, total {} ({:.0} datasets/s)",
        util::duration(t_ingest),
        util::duration(t_flush),
        util::duration(total),
        n as f64 / total.as_secs_f64().max(1e-9)
    );
    if !quiet {
        let d = dir.display();
        say!("");
        say!("try:");
        say!("  atlas ls {d} 'argo_6900001_*'");
        say!("  atlas info {d}");
        say!("  atlas info {d} argo_6900001_001");
        say!("  atlas cat {d} argo_6900001_001 TEMP --start 0 --count 10");
        say!("  atlas stats {d} TEMP");
        say!("  atlas scan {d} TEMP");
        say!("  atlas verify {d}");
        say!("  atlas compact {d}");
        say!("(with cargo: cargo run --release -p atlas-cli -- <command>)");
    }
    Ok(ExitCode::SUCCESS)
}
