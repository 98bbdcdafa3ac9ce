//! The columnar peer of the query workload (issue 14): the statistics a
//! query reads, as an Apache Arrow table (names, TEMP maxima as `f32`,
//! LATITUDE and JULD values as `f64`, `platform_number` strings), filtered
//! with Arrow's compute kernels (`arrow-ord` comparisons, `arrow-arith`
//! boolean `and`, `arrow-select` filter). It is what a user who exported the
//! catalog into a dataframe would run: the table is built once from ATLAS's
//! own catalog (`catalog_array_stats`, `catalog_attribute`), then each query
//! is a few vectorized passes over fully materialised columns.

use anyhow::{ensure, Context, Result};
use arrow_arith::boolean::and;
use arrow_array::{Array, BooleanArray, Float32Array, Float64Array, StringArray};
use arrow_ord::cmp::{eq, gt, gt_eq, lt, lt_eq};
use arrow_select::filter::filter;
use atlas::{Atlas, Attr, StatValue};

/// The statistics table of the synthetic store, one row per dataset in
/// insertion order.
pub struct Table {
    names: StringArray,
    temp_max: Float32Array,
    lat: Float64Array,
    juld: Float64Array,
    platform: StringArray,
}

fn float(v: Option<&StatValue>) -> Option<f64> {
    v.and_then(StatValue::as_f64)
}

impl Table {
    /// Builds the table from the store's catalog (every dataset must have
    /// the three arrays and the attribute, as the generator writes them).
    pub async fn load(store: &Atlas) -> Result<Table> {
        let temp = store.catalog_array_stats("TEMP").await?;
        let lat = store.catalog_array_stats("LATITUDE").await?;
        let juld = store.catalog_array_stats("JULD").await?;
        let platform = store.catalog_attribute("platform_number")?;
        let n = temp.len();
        ensure!(
            lat.len() == n && juld.len() == n && platform.len() == n,
            "the store's datasets do not all have TEMP, LATITUDE, JULD and platform_number"
        );
        for i in 0..n {
            ensure!(
                lat[i].0 == temp[i].0 && juld[i].0 == temp[i].0 && platform[i].0 == temp[i].0,
                "catalog columns list datasets in different orders"
            );
        }
        let names = StringArray::from_iter_values(temp.iter().map(|(n, _)| n.as_str()));
        // TEMP is `f32`: its maxima are `f32`s widened, kept as `f32`.
        #[expect(clippy::cast_possible_truncation, reason = "f32 values widened, exact")]
        let temp_max: Float32Array = temp
            .iter()
            .map(|(_, s)| float(s.max.as_ref()).map(|x| x as f32))
            .collect();
        // One value per profile: its minimum is the value.
        let lat: Float64Array = lat.iter().map(|(_, s)| float(s.min.as_ref())).collect();
        let juld: Float64Array = juld.iter().map(|(_, s)| float(s.min.as_ref())).collect();
        let platform: StringArray = platform
            .iter()
            .map(|(_, a)| match a {
                Attr::String(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        Ok(Table {
            names,
            temp_max,
            lat,
            juld,
            platform,
        })
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// `TEMP.max > 30 and LATITUDE between -10 and 10 and JULD in
    /// [days.0, days.1)`: the names of the matching rows.
    pub fn q1(&self, days: (f64, f64)) -> Result<Vec<String>> {
        let f64s = Float64Array::new_scalar;
        let hot = gt(&self.temp_max, &Float32Array::new_scalar(30.0))?;
        let band = and(
            &gt_eq(&self.lat, &f64s(-10.0))?,
            &lt_eq(&self.lat, &f64s(10.0))?,
        )?;
        let year = and(
            &gt_eq(&self.juld, &f64s(days.0))?,
            &lt(&self.juld, &f64s(days.1))?,
        )?;
        self.names_where(&and(&and(&hot, &band)?, &year)?)
    }

    /// `platform_number = platform`: the names of the matching rows.
    pub fn lookup(&self, platform: &str) -> Result<Vec<String>> {
        let hit = eq(&self.platform, &StringArray::new_scalar(platform))?;
        self.names_where(&hit)
    }

    fn names_where(&self, mask: &BooleanArray) -> Result<Vec<String>> {
        let kept = filter(&self.names, mask)?;
        let kept = kept
            .as_any()
            .downcast_ref::<StringArray>()
            .context("filtered names are strings")?;
        Ok(kept.iter().flatten().map(str::to_owned).collect())
    }
}
