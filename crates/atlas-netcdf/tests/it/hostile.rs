//! Hostile input: damaged, foreign and unsupported files are reported with
//! their reason, the rest is imported, and the store stays intact.

use std::path::{Path, PathBuf};

use atlas::{Atlas, StoreConfig};
use atlas_netcdf::model::{NcAttr, NcDim, NcFile, NcFormat, NcValues, NcVar};
use atlas_netcdf::{import_paths, BulkOptions, Error, FileOutcome};

use crate::common::{argo, assert_verifies, Rng};

/// A small profile-like file with fixed and record variables.
pub fn profile(i: i32) -> NcFile {
    let levels = 5 + (i % 3) as u64;
    let n = levels as usize;
    NcFile {
        format: NcFormat::Classic,
        dims: vec![
            NcDim {
                name: "N_LEVELS".into(),
                len: levels,
                unlimited: false,
            },
            NcDim {
                name: "STRING8".into(),
                len: 8,
                unlimited: false,
            },
            NcDim {
                name: "N_HISTORY".into(),
                len: 2,
                unlimited: true,
            },
        ],
        attrs: vec![NcAttr {
            name: "title".into(),
            value: NcValues::Char(format!("profile {i}").into_bytes()),
        }],
        vars: vec![
            NcVar {
                name: "PLATFORM_NUMBER".into(),
                dims: vec![1],
                attrs: vec![],
                values: NcValues::Char(format!("{:<8}", 6_900_000 + i).into_bytes()),
            },
            NcVar {
                name: "TEMP".into(),
                dims: vec![0],
                attrs: vec![NcAttr {
                    name: "_FillValue".into(),
                    value: NcValues::Float(vec![99999.0]),
                }],
                values: NcValues::Float((0..n).map(|k| 20.0 - k as f32 + i as f32).collect()),
            },
            NcVar {
                name: "HISTORY_STEP".into(),
                dims: vec![2, 1],
                attrs: vec![],
                values: NcValues::Char(b"ARFMARGQ\0\0\0\0\0\0\0\0".to_vec()),
            },
            NcVar {
                name: "HISTORY_PRES".into(),
                dims: vec![2],
                attrs: vec![],
                values: NcValues::Short(vec![i as i16, -1]),
            },
        ],
    }
}

/// A CDF1 header with one variable of `type_code` over one dimension of
/// `dim_len` cells, followed by `data_len` bytes.
pub fn crafted(type_code: u32, dim_len: u32, data_len: usize) -> Vec<u8> {
    let mut b = b"CDF\x01".to_vec();
    let w = |b: &mut Vec<u8>, v: u32| b.extend_from_slice(&v.to_be_bytes());
    w(&mut b, 0); // numrecs
    w(&mut b, 0x0A); // dimensions
    w(&mut b, 1);
    w(&mut b, 1);
    b.extend_from_slice(b"x\0\0\0");
    w(&mut b, dim_len);
    w(&mut b, 0); // no global attributes
    w(&mut b, 0);
    w(&mut b, 0x0B); // variables
    w(&mut b, 1);
    w(&mut b, 1);
    b.extend_from_slice(b"v\0\0\0");
    w(&mut b, 1); // rank
    w(&mut b, 0); // dim id
    w(&mut b, 0); // no attributes
    w(&mut b, 0);
    w(&mut b, type_code);
    w(&mut b, 8); // vsize
    let begin = b.len() as u32 + 4;
    w(&mut b, begin);
    b.extend(std::iter::repeat_n(0u8, data_len));
    b
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_reported_and_the_rest_imported() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    // A committed dataset that must survive.
    let store_path = dir.path().join("store");
    let store = Atlas::create_path(&store_path, StoreConfig::default())
        .await
        .unwrap();
    let first = dir.path().join("keep.nc");
    atlas_netcdf::write_file(&profile(100), &first, None).unwrap();
    atlas_netcdf::import_file(&store, &first, None, &Default::default())
        .await
        .unwrap();
    store.flush().await.unwrap();

    for i in 0..10 {
        let sub = if i % 2 == 0 {
            src.clone()
        } else {
            src.join("sub")
        };
        atlas_netcdf::write_file(&profile(i), sub.join(format!("good_{i}.nc")), None).unwrap();
    }
    let mut whole = Vec::new();
    atlas_netcdf::export::write_nc(&profile(7), None, &mut whole).unwrap();
    let mut expect: Vec<(&str, &str)> = vec![
        ("truncated.nc", "truncated netcdf file"),
        ("notes.nc", "not a netcdf file"),
        ("empty.nc", "not a netcdf file"),
        ("unknown_type.nc", "unsupported: unknown nc_type 42"),
        ("ubyte_in_cdf1.nc", "unsupported: type ubyte"),
        ("huge.nc", "truncated netcdf file"),
        ("bad_dim_id.nc", "malformed netcdf header"),
        (
            "hdf5.nc",
            if atlas_netcdf::NETCDF4 {
                "libnetcdf"
            } else {
                "unsupported: netcdf-4"
            },
        ),
    ];
    write(&src, "truncated.nc", &whole[..whole.len() - 7]);
    write(&src, "notes.nc", b"these are my notes, not a netcdf file\n");
    write(&src, "empty.nc", b"");
    write(&src, "unknown_type.nc", &crafted(42, 2, 8));
    write(&src, "ubyte_in_cdf1.nc", &crafted(7, 2, 8));
    // Claims 2^31-1 doubles (16 GiB): must be refused without allocating.
    write(&src, "huge.nc", &crafted(6, i32::MAX as u32, 8));
    let mut bad_dim = crafted(4, 2, 8);
    bad_dim[56..60].copy_from_slice(&9u32.to_be_bytes()); // dim id 9 of 1
    write(&src, "bad_dim_id.nc", &bad_dim);
    write(
        &src,
        "hdf5.nc",
        b"\x89HDF\r\n\x1a\nnot really hdf5 at all........",
    );
    if let Some([first_profile, ..]) = argo() {
        let bytes = std::fs::read(first_profile).unwrap();
        write(&src, "argo_cut.nc", &bytes[..bytes.len() / 2]);
        expect.push(("argo_cut.nc", "truncated netcdf file"));
    }
    // Ignored: not a NetCDF extension, hidden.
    write(&src, "README.txt", b"hello");
    write(&src, ".hidden.nc", b"junk");

    let mut seen = Vec::new();
    let report = import_paths(
        &store,
        std::slice::from_ref(&src),
        &BulkOptions::default(),
        |p, o| {
            seen.push((p.to_owned(), matches!(o, FileOutcome::Imported { .. })));
        },
    )
    .await
    .unwrap();
    assert_eq!(report.imported, 10, "{report:#?}");
    assert_eq!(report.failed, expect.len(), "{report:#?}");
    assert_eq!(seen.len(), 10 + expect.len());
    for (file, reason) in &expect {
        let (_, e) = report
            .failures()
            .find(|(p, _)| p.ends_with(file))
            .unwrap_or_else(|| panic!("{file} not reported"));
        let msg = e.to_string();
        assert!(msg.contains(reason), "{file}: {msg}");
        assert!(msg.contains(file), "the message names the file: {msg}");
        assert!(e.is_input_error());
    }
    drop(store);

    let store = Atlas::open_path(&store_path).await.unwrap();
    assert_eq!(store.n_datasets(), 11);
    assert!(store.dataset_exists("keep").unwrap());
    assert!(store.dataset_exists("good_9").unwrap());
    let t = store
        .open_dataset("keep")
        .await
        .unwrap()
        .read_array::<f32>("TEMP", vec![], vec![])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t[[0]].to_bits(), 120.0f32.to_bits());
    assert_verifies(&store);
}

#[test]
fn errors_are_typed() {
    let p = Path::new("x.nc");
    assert!(matches!(
        atlas_netcdf::read_bytes(b"CDF\x09", p),
        Err(Error::Unsupported { .. })
    ));
    assert!(matches!(
        atlas_netcdf::read_bytes(&crafted(6, i32::MAX as u32, 8), p),
        Err(Error::Truncated { needed, .. }) if needed > 1 << 34
    ));
    assert!(matches!(
        atlas_netcdf::read_bytes(b"GIF89a", p),
        Err(Error::NotNetcdf { .. })
    ));
}

/// Mutated files (bytes flipped, words overwritten, cut short) give a result
/// or an error, never a panic; the mapping of what parses never panics either.
#[test]
fn mutated_files_never_panic() {
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for (i, format) in [NcFormat::Classic, NcFormat::Offset64, NcFormat::Cdf5]
        .into_iter()
        .enumerate()
    {
        let mut b = Vec::new();
        atlas_netcdf::export::write_nc(&profile(i as i32), Some(format), &mut b).unwrap();
        seeds.push(b);
    }
    if let Some(files) = argo() {
        let smallest = files
            .iter()
            .min_by_key(|f| std::fs::metadata(f).unwrap().len())
            .unwrap();
        seeds.push(std::fs::read(smallest).unwrap());
    }
    let mut rng = Rng::seeded(99);
    let p = Path::new("fuzz.nc");
    let (mut ok, mut failed) = (0, 0);
    for round in 0..4000 {
        let seed = &seeds[round % seeds.len()];
        let mut b = seed.clone();
        for _ in 0..=rng.below(4) {
            // Mutate mostly the header, where the counts and offsets live.
            let header = b.len().min(2048);
            match rng.below(4) {
                0 => {
                    let i = rng.below(header);
                    b[i] ^= 1 << rng.below(8);
                }
                1 => {
                    let i = rng.below(header.saturating_sub(4).max(1));
                    let word = match rng.below(4) {
                        0 => u32::MAX,
                        1 => i32::MAX as u32,
                        2 => 0,
                        _ => rng.next() as u32,
                    };
                    b[i..i + 4].copy_from_slice(&word.to_be_bytes());
                }
                2 => b.truncate(rng.below(b.len() + 1)),
                _ => {
                    let i = rng.below(header);
                    b[i] = rng.next() as u8;
                }
            }
            if b.len() < 4 {
                break;
            }
        }
        match atlas_netcdf::read_bytes(&b, p) {
            Ok(nc) => {
                ok += 1;
                let _ = atlas_netcdf::plan(&nc, "fuzz", &Default::default(), p);
            }
            Err(e) => {
                failed += 1;
                assert!(e.is_input_error());
            }
        }
    }
    eprintln!("{ok} mutated files parsed, {failed} rejected");
    assert!(failed > 1000);
}

/// A bulk import commits after the same files whatever its groups: after
/// the file at which the imported files' bytes reach `batch_bytes`, and at
/// the end. Outcomes come once per file, in path order, failures in
/// place. Checked against each commit's count of added datasets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_fall_after_the_same_files_and_outcomes_come_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in");
    std::fs::create_dir_all(&src).unwrap();
    let mut files: Vec<(String, bool)> = Vec::new();
    for i in 0..23 {
        let name = format!("f{i:02}.nc");
        let good = !matches!(i, 0 | 5 | 6 | 12 | 22);
        if good {
            atlas_netcdf::write_file(&profile(i), src.join(&name), None).unwrap();
        } else {
            write(&src, &name, b"not a netcdf file at all\n");
        }
        files.push((name, good));
    }
    let size = |name: &str| std::fs::metadata(src.join(name)).unwrap().len();
    let batch_bytes = 3 * size("f01.nc") + size("f01.nc") / 2;
    // The rule, file by file.
    let mut want_added = Vec::new();
    let (mut batch, mut added) = (0, 0);
    for (name, good) in &files {
        if *good {
            batch += size(name);
            added += 1;
            if batch >= batch_bytes {
                want_added.push(added);
                (batch, added) = (0, 0);
            }
        }
    }
    if added > 0 {
        want_added.push(added);
    }
    assert!(want_added.len() >= 4, "{want_added:?}");

    // Every generation kept, so the log lists every commit.
    let config = StoreConfig {
        policy: atlas::Policy {
            keep_generations: 100,
            ..atlas::Policy::default()
        },
        ..StoreConfig::default()
    };
    let store = Atlas::create_path(dir.path().join("store"), config)
        .await
        .unwrap();
    let opts = BulkOptions {
        batch_bytes,
        ..BulkOptions::default()
    };
    let mut seen = Vec::new();
    let report = import_paths(&store, std::slice::from_ref(&src), &opts, |p, o| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        seen.push((name, matches!(o, FileOutcome::Imported { .. })));
    })
    .await
    .unwrap();
    assert_eq!(seen, files);
    assert_eq!(report.commits, want_added.len());
    let mut log = store.log(100).await.unwrap();
    log.reverse(); // oldest first
    let got_added: Vec<u64> = log.iter().map(|e| e.n_added).filter(|&n| n > 0).collect();
    assert_eq!(got_added, want_added);
}
