//! `atlas import` and `atlas export` on real Argo profiles (or small
//! synthetic files when the archive is absent).

use std::path::{Path, PathBuf};

use atlas_netcdf::model::{NcAttr, NcDim, NcFile, NcFormat, NcValues, NcVar};

use super::{atlas, ok, s};

/// A small classic file with one `TEMP` variable whose last value is `i`.
pub(crate) fn synthetic(i: i32) -> NcFile {
    NcFile {
        format: NcFormat::Classic,
        dims: vec![NcDim {
            name: "N_LEVELS".into(),
            len: 4,
            unlimited: false,
        }],
        attrs: vec![NcAttr {
            name: "title".into(),
            value: NcValues::Char(format!("profile {i}").into_bytes()),
        }],
        vars: vec![NcVar {
            name: "TEMP".into(),
            dims: vec![0],
            attrs: vec![NcAttr {
                name: "_FillValue".into(),
                value: NcValues::Float(vec![99999.0]),
            }],
            values: NcValues::Float(vec![1.0, 2.0, 3.0, i as f32]),
        }],
    }
}

/// 25 input files in two directories: Argo profiles when the archive is
/// there, else synthetic ones.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let src = dir.join("in");
    std::fs::create_dir_all(src.join("deeper")).unwrap();
    let argo = atlas_netcdf::realdata::argo_dir()
        .unwrap()
        .map(|d| atlas_netcdf::realdata::nc_files(&d).unwrap());
    let mut out = Vec::new();
    for i in 0..25 {
        let sub = if i % 3 == 0 {
            src.join("deeper")
        } else {
            src.clone()
        };
        let dest = if let Some(files) = &argo {
            let f = &files[i * 100];
            let d = sub.join(f.file_name().unwrap());
            std::fs::copy(f, &d).unwrap();
            d
        } else {
            let d = sub.join(format!("p{i:03}.nc"));
            atlas_netcdf::write_file(&synthetic(i as i32), &d, None).unwrap();
            d
        };
        out.push(dest);
    }
    if argo.is_none() {
        eprintln!("!!! Argo archive absent: the CLI import test used synthetic files");
    }
    out
}

#[test]
fn import_then_export_round_trips() {
    let t = tempfile::tempdir().unwrap();
    let files = inputs(t.path());
    let store = t.path().join("store");
    let src = t.path().join("in");
    // A store that does not exist yet is created.
    let out = ok(&["--quiet", "import", s(&store), s(&src)]);
    assert!(out.contains("imported 25 files"), "{out}");
    assert!(out.contains("(new store)"), "{out}");
    assert!(out.contains("stored "), "{out}");
    let names = ok(&["ls", s(&store)]);
    assert_eq!(names.lines().count(), 25);
    // Re-running skips what is there; --replace re-imports.
    let again = ok(&["--quiet", "import", s(&store), s(&src)]);
    assert!(again.contains("imported 0 files"), "{again}");
    assert!(again.contains("skipped 25 files"), "{again}");
    let replaced = ok(&["--quiet", "import", "--replace", s(&store), s(&src)]);
    assert!(replaced.contains("imported 25 files"), "{replaced}");
    assert_eq!(ok(&["ls", s(&store)]).lines().count(), 25);
    // One file under a chosen name.
    let one = ok(&[
        "--quiet",
        "import",
        "--name",
        "chosen",
        s(&store),
        s(&files[0]),
    ]);
    assert!(one.contains("imported 1 file "), "{one}");

    // Export gives back what the original file holds.
    for f in [&files[0], &files[7], &files[24]] {
        let name = atlas_netcdf::default_dataset_name(f);
        let nc_out = t.path().join(format!("{name}.out.nc"));
        let w = ok(&["export", s(&store), &name, s(&nc_out)]);
        assert!(w.contains("classic format"), "{w}");
        let a = atlas_netcdf::read_file(f).unwrap();
        let b = atlas_netcdf::read_file(&nc_out).unwrap();
        assert_eq!(a.dims, b.dims);
        assert_eq!(a.attrs, b.attrs);
        assert_eq!(a.vars.len(), b.vars.len());
        for (x, y) in a.vars.iter().zip(&b.vars) {
            assert_eq!((&x.name, &x.dims, &x.attrs), (&y.name, &y.dims, &y.attrs));
            assert!(x.values.same_bits(&y.values), "{name}/{}", x.name);
        }
    }
    let name = atlas_netcdf::default_dataset_name(&files[0]);
    // The text view hides import bookkeeping and prints each fill value once.
    let info = ok(&["info", s(&store), &name]);
    assert!(!info.contains("_nc_format"), "{info}");
    assert_eq!(info.matches("TEMP:_FillValue").count(), 1, "{info}");
    // The JSON view keeps everything.
    let json = ok(&["info", s(&store), &name, "--json"]);
    assert!(json.contains("_nc_format"), "{json}");
}

#[test]
fn failures_are_reported_and_the_rest_imported() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("mixed");
    std::fs::create_dir(&src).unwrap();
    for i in 0..3 {
        atlas_netcdf::write_file(&synthetic(i), src.join(format!("good{i}.nc")), None).unwrap();
    }
    std::fs::write(src.join("broken.nc"), b"CDF\x01\0\0").unwrap();
    std::fs::write(src.join("text.nc"), b"hello").unwrap();
    let store = t.path().join("store");
    let out = atlas(&["--quiet", "import", s(&store), s(&src)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("imported 3 files"), "{stdout}");
    assert!(stdout.contains("failed 2 files"), "{stdout}");
    assert!(
        stdout.contains("broken.nc: truncated netcdf file"),
        "{stdout}"
    );
    assert!(stdout.contains("text.nc: not a netcdf file"), "{stdout}");
    assert!(stderr.contains("skipped"), "{stderr}");
    assert_eq!(ok(&["ls", s(&store)]).lines().count(), 3);
    ok(&["verify", s(&store)]);

    // Export errors: an unknown dataset, a bad format name.
    let bad = atlas(&["export", s(&store), "nope", s(&t.path().join("x.nc"))]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("nope"));
    let usage = atlas(&[
        "export",
        "--format",
        "hdf9",
        s(&store),
        "good0",
        s(&t.path().join("x.nc")),
    ]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(!t.path().join("x.nc").exists());
    let cdf5 = ok(&[
        "export",
        "--format",
        "cdf5",
        s(&store),
        "good1",
        s(&t.path().join("g1.nc")),
    ]);
    assert!(cdf5.contains("cdf5 format"), "{cdf5}");
    let back = atlas_netcdf::read_file(t.path().join("g1.nc")).unwrap();
    assert_eq!(back.format, NcFormat::Cdf5);
    assert_eq!(back.vars, synthetic(1).vars);
}

/// Writes a NetCDF-4 file with a `TEMP` variable of four levels.
#[cfg(feature = "netcdf4")]
fn write_netcdf4(path: &Path, temp: &[f32; 4]) {
    let mut f = netcdf::create(path).unwrap();
    f.add_dimension("N_LEVELS", 4).unwrap();
    f.add_attribute("title", "netcdf-4 profile").unwrap();
    let mut v = f.add_variable::<f32>("TEMP", &["N_LEVELS"]).unwrap();
    v.put_values(temp, ..).unwrap();
}

/// The shared libraries a binary needs, as `ldd` lists them (`None` when
/// `ldd` cannot tell).
#[cfg(feature = "netcdf4")]
fn ldd(exe: &Path) -> Option<String> {
    let out = std::process::Command::new("ldd").arg(exe).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `atlas` links no libnetcdf (each run starts without loading it and the
/// forty libraries behind it); a NetCDF-4 file among classic ones is
/// imported all the same, by the helper `atlas-netcdf4` that `atlas import`
/// execs. Without the helper beside it, `atlas` imports the classic files
/// and reports each NetCDF-4 one as needing it.
#[cfg(feature = "netcdf4")]
#[test]
fn netcdf4_imports_go_through_the_helper() {
    let atlas_exe = Path::new(env!("CARGO_BIN_EXE_atlas"));
    let helper = atlas_exe.with_file_name("atlas-netcdf4");
    if let (Some(main), Some(with)) = (ldd(atlas_exe), ldd(&helper)) {
        assert!(with.contains("libnetcdf"), "{with}");
        assert!(
            !main.contains("libnetcdf"),
            "atlas links libnetcdf:\n{main}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in");
    std::fs::create_dir_all(&src).unwrap();
    atlas_netcdf::write_file(&synthetic(7), src.join("classic.nc"), None).unwrap();
    write_netcdf4(&src.join("modern.nc"), &[4.5, 5.5, 6.5, 7.5]);
    let store = dir.path().join("store");
    let (store_s, src_s) = (s(&store), s(&src));
    // HDF5 opens files without close-on-exec and locks them while writing:
    // a test thread that forks a process while `write_netcdf4` holds
    // modern.nc open leaves that process holding the exclusive lock for as
    // long as it runs, and the helper's read is refused ("HDF error", seen
    // once in CI). This test's imports read with HDF5's file locking off.
    let import = std::process::Command::new(env!("CARGO_BIN_EXE_atlas"))
        .args(["import", "-q", store_s, src_s])
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let ls = ok(&["ls", store_s]);
    assert!(ls.contains("classic") && ls.contains("modern"), "{ls}");
    let cat = ok(&["cat", store_s, "modern", "TEMP"]);
    assert!(cat.contains("4.5") && cat.contains("7.5"), "{cat}");

    // A copy of `atlas` alone, without its helper.
    let lone = dir.path().join("bin").join("atlas");
    std::fs::create_dir_all(lone.parent().unwrap()).unwrap();
    std::fs::copy(atlas_exe, &lone).unwrap();
    let store2_path = dir.path().join("store2");
    let store2 = s(&store2_path);
    // Another test thread forking while `copy` held the new file open for
    // writing leaves a child holding that descriptor until it execs; running
    // the file meanwhile fails with ETXTBSY ("Text file busy"). That window
    // is short: try again.
    let mut tries = 0;
    let out = loop {
        match std::process::Command::new(&lone)
            .args(["import", "-q", store2, src_s])
            .output()
        {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r.unwrap(),
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("atlas-netcdf4"), "{err}");
    let ls = ok(&["ls", store2]);
    assert!(ls.contains("classic") && !ls.contains("modern"), "{ls}");
}
