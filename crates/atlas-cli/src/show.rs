//! Read-only commands: `ls`, `info`, `cat`, `stats`.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use atlas::{ArraySchema, Atlas, DType, StatValue};
use serde_json::{json, Value};

use crate::cells::{to_json, to_text, with_dtype};
use crate::{output, util};

/// Opens the store (at `--at`, read-only, when given).
pub async fn open(store: &Path) -> Result<Atlas> {
    crate::history_cmd::open(store).await
}

fn shape_text(s: &ArraySchema) -> String {
    let dims: Vec<String> = s
        .dims
        .iter()
        .zip(&s.shape)
        .map(|(d, n)| format!("{d}={n}"))
        .collect();
    format!("{} [{}]", s.dtype, dims.join(", "))
}

/// A statistic as text; `f32` arrays print with `f32` precision.
fn stat_text(v: Option<&StatValue>, dtype: DType) -> String {
    match v {
        None => "-".to_owned(),
        Some(StatValue::Float(f)) if dtype == DType::Float32 => (*f as f32).to_string(),
        Some(v) => v.to_string(),
    }
}

fn stat_json(v: Option<&StatValue>, dtype: DType) -> Value {
    match v {
        None => Value::Null,
        Some(StatValue::Float(f)) if dtype == DType::Float32 => {
            crate::cells::Cell::json(&(*f as f32))
        }
        Some(StatValue::Bool(b)) => json!(b),
        Some(StatValue::Int(i)) => json!(i),
        Some(StatValue::UInt(u)) => json!(u),
        Some(StatValue::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Some(StatValue::Str(s)) => json!(s),
        Some(StatValue::Timestamp(t)) => json!(t.to_string()),
    }
}

fn schema_json(s: &ArraySchema) -> Value {
    json!({
        "dtype": s.dtype.name(),
        "dims": s.dims,
        "shape": s.shape,
        "chunk_shape": s.chunk_shape,
        "fill_value": s.fill_value.as_ref().map(ToString::to_string),
    })
}

/// `atlas ls`.
pub async fn ls(store: &Path, pattern: Option<&str>, arrays: bool, json: bool) -> Result<ExitCode> {
    let atlas = open(store).await?;
    let names = atlas.list_datasets()?;
    let matches = |n: &str| pattern.is_none_or(|p| util::glob(p, n));
    let mut out = BufWriter::new(output::stdout());
    if json {
        let mut list = Vec::new();
        for n in names.iter().filter(|n| matches(n)) {
            if arrays {
                let meta = atlas.dataset_meta(n)?.context("dataset vanished")?;
                let arrs: serde_json::Map<String, Value> = meta
                    .arrays
                    .iter()
                    .map(|(a, e)| (a.clone(), schema_json(&e.schema)))
                    .collect();
                list.push(json!({"name": n, "arrays": arrs}));
            } else {
                list.push(json!(n));
            }
        }
        serde_json::to_writer_pretty(&mut out, &list)?;
        writeln!(out)?;
    } else {
        for n in names.iter().filter(|n| matches(n)) {
            if arrays {
                let meta = atlas.dataset_meta(n)?.context("dataset vanished")?;
                let arrs: Vec<String> = meta
                    .arrays
                    .iter()
                    .map(|(a, e)| format!("{a}: {}", shape_text(&e.schema)))
                    .collect();
                writeln!(out, "{n}\t{}", arrs.join("; "))?;
            } else {
                writeln!(out, "{n}")?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `atlas info`.
pub async fn info(store: &Path, dataset: Option<&str>, json: bool) -> Result<ExitCode> {
    let atlas = open(store).await?;
    match dataset {
        Some(d) => dataset_info(&atlas, d, json),
        None => store_info(&atlas, store, json),
    }
}

fn dataset_info(atlas: &Atlas, name: &str, json_out: bool) -> Result<ExitCode> {
    let meta = atlas
        .dataset_meta(name)?
        .with_context(|| format!("dataset {name:?} not found"))?;
    if json_out {
        let arrays: serde_json::Map<String, Value> = meta
            .arrays
            .iter()
            .map(|(a, e)| {
                let mut v = schema_json(&e.schema);
                v["attributes"] = serde_json::to_value(&*e.attributes).unwrap_or(Value::Null);
                (a.clone(), v)
            })
            .collect();
        let v = json!({
            "name": name,
            "attributes": serde_json::to_value(&meta.attributes)?,
            "arrays": arrays,
        });
        say!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    // ncdump -h style.
    let mut dims: indexmap::IndexMap<&str, u64> = indexmap::IndexMap::new();
    for e in meta.arrays.values() {
        for (d, n) in e.schema.dims.iter().zip(&e.schema.shape) {
            dims.entry(d.as_str()).or_insert(*n);
        }
    }
    say!("dataset {name} {{");
    say!("dimensions:");
    for (d, n) in &dims {
        say!("\t{d} = {n} ;");
    }
    say!("variables:");
    for (a, e) in &meta.arrays {
        let s = &e.schema;
        let ty = match s.dtype {
            DType::Float32 => "float",
            DType::Float64 => "double",
            DType::Int8 => "byte",
            DType::UInt8 => "ubyte",
            DType::Int16 => "short",
            DType::UInt16 => "ushort",
            DType::Int32 => "int",
            DType::UInt32 => "uint",
            DType::Int64 => "int64",
            DType::UInt64 => "uint64",
            DType::String => "string",
            DType::Bool => "bool",
            DType::Timestamp => "timestamp",
            _ => "unknown",
        };
        say!("\t{ty} {a}({}) ;", s.dims.join(", "));
        if let Some(f) = &s.fill_value {
            say!("\t\t{a}:_FillValue = {f} ;");
        }
        // The schema's fill value is printed above; `_nc_*` attributes are
        // import bookkeeping (see docs/netcdf.md), shown by `--json`.
        for (k, v) in e.attributes.iter() {
            if k == "_FillValue" || k.starts_with("_nc_") {
                continue;
            }
            say!("\t\t{a}:{k} = {v} ;");
        }
        say!(
            "\t\t// chunks: [{}]",
            s.chunk_shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !meta.attributes.is_empty() {
        say!("");
        say!("// global attributes:");
        for (k, v) in &meta.attributes {
            if k.starts_with("_nc_") {
                continue;
            }
            say!("\t\t:{k} = {v} ;");
        }
    }
    say!("}}");
    Ok(ExitCode::SUCCESS)
}

fn store_info(atlas: &Atlas, store: &Path, json_out: bool) -> Result<ExitCode> {
    // Counts from the manifest: nothing per dataset is read.
    let n_datasets = atlas.n_datasets();
    let arrays = atlas.list_arrays();
    let mut rows = Vec::new();
    for a in &arrays {
        let layers = atlas.array_layers(a);
        let dir = atlas.array_dir(a).unwrap_or_else(|| store.join(a));
        let names: Vec<&str> = layers.iter().map(atlas::LayerId::as_str).collect();
        let on_disk = util::file_sizes(store, &dir, &names);
        let n_ds = atlas.n_datasets_with_array(a);
        rows.push((a.clone(), n_ds, layers.len(), on_disk));
    }
    let total = util::disk_usage(store);
    // The manifest plus the registry runs.
    let registry_bytes = util::file_sizes(store, atlas.root(), &["atlas.json"])
        + util::disk_usage(&store.join("atlas.meta"));
    let c = atlas.compression();
    if json_out {
        let v = json!({
            "path": store.display().to_string(),
            "datasets": n_datasets,
            "generation": atlas.generation(),
            "codec": c.codec.to_string(),
            "shuffle": c.shuffle,
            "meta_format": atlas.meta_format().name(),
            "registry_bytes": registry_bytes,
            "bytes_on_disk": total,
            "arrays": rows.iter().map(|(a, n, l, b)| json!({"name": a, "datasets": n, "layers": l, "bytes": b})).collect::<Vec<_>>(),
        });
        say!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    say!("store {}", store.display());
    say!("  datasets     {}", n_datasets);
    say!("  generation   {}", atlas.generation());
    say!(
        "  codec        {}{}",
        c.codec,
        if c.shuffle { " + byte shuffle" } else { "" }
    );
    say!("  registry     {}", util::bytes(registry_bytes));
    say!("  on disk      {}", util::bytes(total));
    say!("  arrays       {}", arrays.len());
    say!(
        "    {:<24} {:>9} {:>7} {:>11}",
        "name",
        "datasets",
        "layers",
        "bytes"
    );
    for (a, n, l, b) in &rows {
        say!("    {a:<24} {n:>9} {l:>7} {:>11}", util::bytes(*b));
    }
    Ok(ExitCode::SUCCESS)
}

/// `atlas cat`.
pub async fn cat(
    store: &Path,
    dataset: &str,
    array: &str,
    start: Vec<u64>,
    count: Vec<u64>,
    json_out: bool,
) -> Result<ExitCode> {
    let atlas = open(store).await?;
    let ds = atlas.open_dataset(dataset).await?;
    let schema = ds
        .array_schema(array)?
        .with_context(|| format!("dataset {dataset:?} has no array {array:?}"))?;
    // Fill in defaults: start at the origin, count to the end.
    let (start, count) = if start.is_empty() && count.is_empty() {
        (vec![], vec![])
    } else {
        let start = if start.is_empty() {
            vec![0; schema.rank()]
        } else {
            start
        };
        let count = if count.is_empty() {
            schema
                .shape
                .iter()
                .zip(&start)
                .map(|(n, s)| n.saturating_sub(*s))
                .collect()
        } else {
            count
        };
        (start, count)
    };
    with_dtype!(schema.dtype, T => {
        let a = ds.read_array::<T>(array, start.clone(), count.clone()).await?.context("array vanished")?;
        if json_out {
            let v = json!({
                "dataset": dataset,
                "array": array,
                "dtype": schema.dtype.name(),
                "dims": schema.dims,
                "start": if start.is_empty() { vec![0; schema.rank()] } else { start },
                "shape": a.shape(),
                "data": to_json(&a),
            });
            say!("{}", serde_json::to_string(&v)?);
        } else {
            say!("{}", to_text(&a));
        }
    });
    Ok(ExitCode::SUCCESS)
}

/// `atlas stats`.
pub async fn stats(
    store: &Path,
    array: &str,
    filter: Option<&str>,
    json_out: bool,
) -> Result<ExitCode> {
    let atlas = open(store).await?;
    // Statistics from the registry's catalog: one column, no array file.
    let mut all = atlas.catalog_array_stats(array).await?;
    if let Some(expr) = filter {
        match crate::query_cmd::matches(&atlas, expr).await? {
            Ok(r) => {
                let keep: std::collections::HashSet<&str> =
                    r.names().iter().map(String::as_str).collect();
                all.retain(|(n, _)| keep.contains(n.as_str()));
            }
            Err(code) => return Ok(code),
        }
    }
    let mut rows = Vec::new();
    let (mut cells, mut nulls) = (0u64, 0u64);
    let (mut min, mut max): (Option<StatValue>, Option<StatValue>) = (None, None);
    let mut dtype = DType::Float64;
    if let Some((first, _)) = all.first() {
        if let Some(m) = atlas.dataset_meta(first)? {
            if let Some(a) = m.arrays.get(array) {
                dtype = a.schema.dtype;
            }
        }
    }
    for (name, st) in all {
        cells += st.row_count;
        nulls += st.null_count;
        if let Some(m) = &st.min {
            if min
                .as_ref()
                .is_none_or(|c| m.partial_cmp_same(c) == Some(std::cmp::Ordering::Less))
            {
                min = Some(m.clone());
            }
        }
        if let Some(m) = &st.max {
            if max
                .as_ref()
                .is_none_or(|c| m.partial_cmp_same(c) == Some(std::cmp::Ordering::Greater))
            {
                max = Some(m.clone());
            }
        }
        rows.push((name, st));
    }
    if rows.is_empty() {
        let which = if filter.is_some() {
            " matching the query"
        } else {
            ""
        };
        anyhow::bail!("no dataset{which} has an array {array:?}");
    }
    let mut out = BufWriter::new(output::stdout());
    if json_out {
        let v = json!({
            "array": array,
            "datasets": rows.iter().map(|(n, s)| json!({
                "name": n, "min": stat_json(s.min.as_ref(), dtype), "max": stat_json(s.max.as_ref(), dtype),
                "null_count": s.null_count, "row_count": s.row_count,
            })).collect::<Vec<_>>(),
            "total": {"datasets": rows.len(), "min": stat_json(min.as_ref(), dtype), "max": stat_json(max.as_ref(), dtype), "null_count": nulls, "row_count": cells},
        });
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        let show = |v: &Option<StatValue>| stat_text(v.as_ref(), dtype);
        writeln!(
            out,
            "{:<28} {:>14} {:>14} {:>10} {:>10}",
            "dataset", "min", "max", "nulls", "cells"
        )?;
        for (n, s) in &rows {
            writeln!(
                out,
                "{n:<28} {:>14} {:>14} {:>10} {:>10}",
                show(&s.min),
                show(&s.max),
                s.null_count,
                s.row_count
            )?;
        }
        writeln!(
            out,
            "{:<28} {:>14} {:>14} {nulls:>10} {cells:>10}",
            format!("TOTAL ({} datasets)", rows.len()),
            show(&min),
            show(&max)
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
