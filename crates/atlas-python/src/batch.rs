//! `Store.create_datasets`: many datasets in one call, all or nothing
//! (`atlas::Atlas::create_datasets`), from plain Python dicts.

use std::collections::HashMap;
use std::sync::Arc;

use atlas::{ArrayData, ArraySchema, Attr, DType, Error, NewArray, NewDataset};
use indexmap::IndexMap;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::array::to_array_data;
use crate::convert::{attr_from_py, fill_from_py, parse_dtype};
use crate::errors::{invalid, to_py};

/// Keys an array's dict may have.
const ARRAY_KEYS: [&str; 7] = [
    "data",
    "dims",
    "dtype",
    "shape",
    "chunks",
    "fill_value",
    "attrs",
];
/// Keys a dataset's dict may have.
const DATASET_KEYS: [&str; 3] = ["name", "attrs", "arrays"];

/// The dict `obj`, refusing keys not in `allowed` (a misspelt key would
/// otherwise be ignored silently).
fn dict_of<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    allowed: &[&str],
) -> PyResult<Bound<'py, PyDict>> {
    let d = obj
        .cast::<PyDict>()
        .map_err(|_| {
            invalid(format!(
                "{what}: a dict, not {}",
                obj.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?
        .clone();
    for key in d.keys() {
        let k: String = key
            .extract()
            .map_err(|_| invalid(format!("{what}: keys are strings")))?;
        if !allowed.contains(&k.as_str()) {
            return Err(invalid(format!(
                "{what}: unknown key {k:?} (expected one of {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(d)
}

/// The value of `key` unless absent or `None`.
fn get<'py>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(d.get_item(key)?.filter(|v| !v.is_none()))
}

/// An attribute dict, in its order.
fn attrs_of(obj: Option<Bound<'_, PyAny>>, what: &str) -> PyResult<IndexMap<String, Attr>> {
    let Some(obj) = obj else {
        return Ok(IndexMap::new());
    };
    let d = obj
        .cast::<PyDict>()
        .map_err(|_| invalid(format!("{what}: attrs must be a dict")))?;
    let mut out = IndexMap::with_capacity(d.len());
    for (k, v) in d.iter() {
        let k: String = k
            .extract()
            .map_err(|_| invalid(format!("{what}: attribute names are strings")))?;
        let a = attr_from_py(&v).map_err(|e| invalid(format!("{what}: attribute {k:?}: {e}")))?;
        out.insert(k, a);
    }
    Ok(out)
}

/// The element type of `data` when the spec names none: `str` and object
/// arrays as strings, `datetime64` as timestamps, numbers as themselves.
fn dtype_of_data(data: &Bound<'_, PyAny>) -> PyResult<DType> {
    let arr = data
        .py()
        .import("numpy")?
        .getattr("asarray")?
        .call1((data,))?;
    parse_dtype(&arr.getattr("dtype")?)
}

/// Schemas already built in this call, by array name: an equal schema is
/// shared (one copy in memory, checked once by the batch).
#[derive(Default)]
struct Schemas(HashMap<String, Arc<ArraySchema>>);

impl Schemas {
    fn share(&mut self, array: &str, schema: ArraySchema) -> Arc<ArraySchema> {
        match self.0.get(array) {
            Some(s) if **s == schema => Arc::clone(s),
            _ => {
                let s = Arc::new(schema);
                self.0.insert(array.to_owned(), Arc::clone(&s));
                s
            }
        }
    }
}

fn new_array(
    dataset: &str,
    name: &str,
    spec: &Bound<'_, PyAny>,
    schemas: &mut Schemas,
) -> PyResult<NewArray> {
    let what = format!("dataset {dataset:?}, array {name:?}");
    let d = dict_of(spec, &what, &ARRAY_KEYS)?;
    let data = get(&d, "data")?;
    let dims: Vec<String> = get(&d, "dims")?
        .ok_or_else(|| invalid(format!("{what}: 'dims' is required")))?
        .extract()
        .map_err(|_| invalid(format!("{what}: 'dims' is a list of strings")))?;
    let dtype = match (get(&d, "dtype")?, &data) {
        (Some(t), _) => parse_dtype(&t)?,
        (None, Some(data)) => dtype_of_data(data)?,
        (None, None) => return Err(invalid(format!("{what}: give 'data' or 'dtype'"))),
    };
    let cells: Option<ArrayData> = data
        .as_ref()
        .map(|data| to_array_data(data, dtype))
        .transpose()
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    let data_shape: Option<Vec<u64>> = cells
        .as_ref()
        .map(|c| c.shape().iter().map(|&n| n as u64).collect());
    let shape: Vec<u64> = match (get(&d, "shape")?, data_shape) {
        (Some(s), data_shape) => {
            let s: Vec<u64> = s
                .extract()
                .map_err(|_| invalid(format!("{what}: 'shape' is a list of sizes")))?;
            if let Some(ds) = data_shape.filter(|ds| *ds != s) {
                return Err(invalid(format!(
                    "{what}: data of shape {ds:?} for an array of shape {s:?}"
                )));
            }
            s
        }
        (None, Some(ds)) => ds,
        (None, None) => return Err(invalid(format!("{what}: give 'data' or 'shape'"))),
    };
    let chunks: Option<Vec<u64>> = get(&d, "chunks")?
        .map(|c| c.extract())
        .transpose()
        .map_err(|_| invalid(format!("{what}: 'chunks' is a list of sizes")))?;
    let fill = get(&d, "fill_value")?
        .map(|f| fill_from_py(dtype, &f))
        .transpose()?;
    let attributes = Arc::new(attrs_of(get(&d, "attrs")?, &what)?);
    let schema = ArraySchema::new(name, dtype, dims, shape, chunks, fill).map_err(|e| {
        to_py(&Error::Array {
            dataset: dataset.to_owned(),
            array: name.to_owned(),
            error: Box::new(e),
        })
    })?;
    Ok(NewArray {
        name: name.to_owned(),
        schema: schemas.share(name, schema),
        attributes,
        data: cells,
    })
}

/// The datasets of a `Store.create_datasets` call, converted (with the GIL).
pub fn new_datasets(datasets: &Bound<'_, PyAny>) -> PyResult<Vec<NewDataset>> {
    let mut schemas = Schemas::default();
    let mut out = Vec::new();
    for (k, spec) in datasets.try_iter()?.enumerate() {
        let spec = spec?;
        let d = dict_of(&spec, &format!("datasets[{k}]"), &DATASET_KEYS)?;
        let name: String = get(&d, "name")?
            .ok_or_else(|| invalid(format!("datasets[{k}]: 'name' is required")))?
            .extract()
            .map_err(|_| invalid(format!("datasets[{k}]: 'name' is a string")))?;
        let what = format!("dataset {name:?}");
        let mut ds = NewDataset::new(name.as_str());
        ds.attributes = attrs_of(get(&d, "attrs")?, &what)?;
        if let Some(arrays) = get(&d, "arrays")? {
            let arrays = arrays
                .cast::<PyDict>()
                .map_err(|_| invalid(format!("{what}: 'arrays' maps array names to dicts")))?;
            ds.arrays.reserve(arrays.len());
            for (array, spec) in arrays.iter() {
                let array = array
                    .cast::<PyString>()
                    .map_err(|_| invalid(format!("{what}: array names are strings")))?
                    .to_str()?
                    .to_owned();
                ds.arrays
                    .push(new_array(&name, &array, &spec, &mut schemas)?);
            }
        }
        out.push(ds);
    }
    Ok(out)
}
