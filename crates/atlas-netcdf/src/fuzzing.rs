//! No-panic entry point for fuzzing the classic NetCDF reader (the
//! `netcdf_classic` target in `fuzz/`).
//!
//! The header parser is crate-private; this wrapper exposes it, and the
//! whole-file reader, to the fuzz target without widening the API (the module
//! is hidden from the docs). A panic, an abort, a hang or an allocation the
//! bytes do not justify, on any input, is a bug.

use std::path::Path;

use crate::classic::read;
use crate::model::NcFile;

/// Parses `bytes` as a CDF1/CDF2/CDF5 file held in memory and decodes every
/// variable, as [`crate::read_bytes`] does for a classic file; `Some` with the
/// file if it is a valid one.
///
/// The header parser first runs on the first half of the bytes with the
/// whole length, as [`crate::ClassicReader::open`] parses a header from a
/// first read that may stop inside it.
pub fn read_classic(bytes: &[u8]) -> Option<NcFile> {
    let len = bytes.len() as u64;
    let _ = read::parse_header(&bytes[..bytes.len() / 2], len);
    read::read_bytes(bytes, Path::new("<fuzz>.nc")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NcAttr, NcDim, NcFormat, NcValues, NcVar};

    fn dim(name: &str, len: u64, unlimited: bool) -> NcDim {
        NcDim {
            name: name.into(),
            len,
            unlimited,
        }
    }

    fn var(name: &str, dims: Vec<usize>, values: NcValues) -> NcVar {
        NcVar {
            name: name.into(),
            dims,
            attrs: vec![],
            values,
        }
    }

    fn attr(name: &str, value: NcValues) -> NcAttr {
        NcAttr {
            name: name.into(),
            value,
        }
    }

    /// The seed files of the `netcdf_classic` fuzz target, by name.
    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        // A profile: fixed and record variables, char, attributes.
        let profile = NcFile {
            format: NcFormat::Classic,
            dims: vec![
                dim("N_LEVELS", 5, false),
                dim("STRING8", 8, false),
                dim("N_HISTORY", 2, true),
            ],
            attrs: vec![attr("title", NcValues::Char(b"profile".to_vec()))],
            vars: vec![
                var("PLATFORM", vec![1], NcValues::Char(b"6900001 ".to_vec())),
                NcVar {
                    attrs: vec![
                        attr("_FillValue", NcValues::Float(vec![99999.0])),
                        attr("units", NcValues::Char(b"degC".to_vec())),
                    ],
                    ..var(
                        "TEMP",
                        vec![0],
                        NcValues::Float(vec![20.5, 19.0, 18.25, 99999.0, f32::NAN]),
                    )
                },
                var(
                    "PRES",
                    vec![0],
                    NcValues::Double(vec![1.0, 5.5, 10.0, 20.0, 50.0]),
                ),
                var(
                    "HISTORY_STEP",
                    vec![2, 1],
                    NcValues::Char(b"ARFMARGQ\0\0\0\0\0\0\0\0".to_vec()),
                ),
                var("HISTORY_PRES", vec![2], NcValues::Short(vec![7, -1])),
                var("CYCLE", vec![], NcValues::Int(vec![35])),
            ],
        };
        // Every CDF5 type, as variables and as attributes.
        let cdf5 = NcFile {
            format: NcFormat::Cdf5,
            dims: vec![dim("n", 3, false), dim("t", 2, true)],
            attrs: vec![
                attr("b", NcValues::Byte(vec![-1, 2])),
                attr("ub", NcValues::UByte(vec![255])),
                attr("us", NcValues::UShort(vec![65535, 1])),
                attr("ui", NcValues::UInt(vec![7])),
                attr("i64", NcValues::Int64(vec![i64::MIN])),
                attr("u64", NcValues::UInt64(vec![u64::MAX])),
                attr("d", NcValues::Double(vec![f64::INFINITY])),
            ],
            vars: vec![
                var("b", vec![0], NcValues::Byte(vec![-128, 0, 127])),
                var("ub", vec![0], NcValues::UByte(vec![0, 1, 255])),
                var("us", vec![0], NcValues::UShort(vec![1, 2, 3])),
                var("ui", vec![0], NcValues::UInt(vec![4, 5, 6])),
                var(
                    "i64",
                    vec![1, 0],
                    NcValues::Int64(vec![1, -2, 3, -4, 5, -6]),
                ),
                var("u64", vec![1], NcValues::UInt64(vec![9, 10])),
            ],
        };
        // One record variable of bytes: records are not padded.
        let single_record = NcFile {
            format: NcFormat::Classic,
            dims: vec![dim("time", 3, true)],
            attrs: vec![],
            vars: vec![var("flag", vec![0], NcValues::Byte(vec![1, 2, 3]))],
        };
        let no_vars = NcFile {
            format: NcFormat::Classic,
            dims: vec![dim("x", 4, false)],
            attrs: vec![attr("history", NcValues::Char(b"none".to_vec()))],
            vars: vec![],
        };
        let write = |nc: &NcFile, format: NcFormat| {
            let mut out = Vec::new();
            crate::export::write_nc(nc, Some(format), &mut out).unwrap();
            out
        };
        let single = write(&single_record, NcFormat::Classic);
        // The same file with the streaming record count (0xFFFFFFFF): readers
        // count the records from the file's length.
        let mut streaming = single.clone();
        streaming[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        vec![
            ("profile-cdf1", write(&profile, NcFormat::Classic)),
            ("profile-cdf2", write(&profile, NcFormat::Offset64)),
            ("profile-cdf5", write(&profile, NcFormat::Cdf5)),
            ("types-cdf5", write(&cdf5, NcFormat::Cdf5)),
            ("single-record", single),
            ("streaming", streaming),
            ("no-vars", write(&no_vars, NcFormat::Classic)),
        ]
    }

    /// A CDF1 file with one dimension `x` of `len` cells and a `byte`
    /// variable over it for each of `begins` (data offsets relative to the
    /// end of the header), followed by `data_len` bytes of data.
    fn byte_vars(len: u32, begins: &[u32], data_len: usize) -> Vec<u8> {
        let mut b = b"CDF\x01".to_vec();
        let w = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_be_bytes());
        for v in [0, 0x0A, 1, 1] {
            w(&mut b, v); // numrecs, dimension list, one name of 1 byte
        }
        b.extend_from_slice(b"x\0\0\0");
        for v in [len, 0, 0, 0x0B, begins.len() as u32] {
            w(&mut b, v); // dim length, no attributes, variable list
        }
        let header_len = b.len() as u32 + 36 * begins.len() as u32;
        for (i, &at) in begins.iter().enumerate() {
            w(&mut b, 3); // a name of three digits
            b.extend_from_slice(format!("{i:03}\0").as_bytes());
            // rank 1, dim 0, no attributes, NC_BYTE, vsize, begin
            for v in [1, 0, 0, 0, 1, len.next_multiple_of(4), header_len + at] {
                w(&mut b, v);
            }
        }
        assert_eq!(b.len() as u32, header_len);
        b.extend((0..data_len).map(|i| i as u8));
        b
    }

    /// Variables sharing bytes: a file of 316 bytes used to decode to 400
    /// bytes of values, one of 7.6 KB to 400 KB (the `netcdf_classic` fuzz
    /// target's oracle: values decoded ≤ bytes in the file).
    #[test]
    fn variables_sharing_bytes_are_refused() {
        assert!(read_classic(&byte_vars(200, &[0, 200], 400)).is_some());
        assert!(read_classic(&byte_vars(200, &[200, 0], 400)).is_some());
        for (begins, data_len) in [
            (vec![0, 0], 200),
            (vec![0, 196], 400),
            (vec![196, 0], 400),
            (vec![0; 100], 4000),
        ] {
            let bytes = byte_vars(if data_len == 4000 { 4000 } else { 200 }, &begins, data_len);
            let err = read::read_bytes(&bytes, Path::new("o.nc")).unwrap_err();
            assert!(
                matches!(&err, crate::Error::Malformed { reason, .. } if reason.contains("overlap")),
                "{begins:?}: {err}"
            );
            assert!(read_classic(&bytes).is_none());
        }
    }

    /// Every seed reads through the fuzzing entry point, with every variable
    /// as written. With `ATLAS_FUZZ_CORPUS` set (to `fuzz/corpus`), also
    /// writes the seeds to its `netcdf_classic/` directory.
    #[test]
    fn classic_seed_files_read_back() {
        let seeds = seeds();
        for (name, bytes) in &seeds {
            let nc = read_classic(bytes).unwrap_or_else(|| panic!("seed {name} does not read"));
            assert!(!nc.dims.is_empty(), "{name}");
            for v in &nc.vars {
                let cells: u64 = nc.shape(v).iter().product();
                assert_eq!(v.values.len() as u64, cells, "{name}: {}", v.name);
            }
        }
        assert_eq!(read_classic(&seeds[5].1), read_classic(&seeds[4].1));
        assert!(read_classic(&seeds[0].1[..seeds[0].1.len() / 2]).is_none());
        if let Some(dir) = std::env::var_os("ATLAS_FUZZ_CORPUS") {
            let dir = Path::new(&dir).join("netcdf_classic");
            std::fs::create_dir_all(&dir).unwrap();
            for (name, bytes) in &seeds {
                std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
            }
        }
    }
}
