//! Tail merges: the newest layers merged into one delta equal, read back and
//! reopened from the new layer list, exactly what the unmerged stack held,
//! whatever the tail did (writes, deletes, redefinitions with other schemas).

use array_format::{ArrayFileOptions, MergePlan};

use crate::common::{dims, dump, mem_file, mem_open, nd};

#[test]
fn a_merged_tail_equals_the_stack_it_replaces() {
    let (storage, mut f) = mem_file(ArrayFileOptions::default());
    for name in ["a", "b", "c", "keep"] {
        f.define_array::<f32>(name, dims(1), vec![6], Some(vec![2]), None)
            .unwrap();
        f.write_array(name, &[0], nd(&[6], vec![1.0f32; 6]).view())
            .unwrap();
    }
    let mut layers = vec![f.flush().unwrap().unwrap()];
    // Tail: an update, a delete, a new array, a delete + redefinition with
    // another schema, a delete that is never redefined.
    f.write_array("a", &[2], nd(&[2], vec![5.0f32, 6.0]).view())
        .unwrap();
    f.delete_array("b").unwrap();
    layers.push(f.flush().unwrap().unwrap());
    f.define_array::<i32>("d", dims(2), vec![2, 2], None, None)
        .unwrap();
    f.write_array("d", &[0, 0], nd(&[2, 2], vec![1i32, 2, 3, 4]).view())
        .unwrap();
    f.delete_array("c").unwrap();
    layers.push(f.flush().unwrap().unwrap());
    f.define_array::<f64>("c", dims(1), vec![3], None, None)
        .unwrap();
    f.write_array("c", &[1], nd(&[1], vec![9.5f64]).view())
        .unwrap();
    f.write_array("a", &[5], nd(&[1], vec![7.0f32]).view())
        .unwrap();
    layers.push(f.flush().unwrap().unwrap());
    let before = dump(&f).unwrap();
    assert_eq!(f.layers(), layers);
    // The tail (3 deltas, a few bytes each) is smaller than the base.
    assert_eq!(f.merge_plan(3), Some(MergePlan::Tail(1)));
    assert_eq!(f.merge_plan(4), None);
    let p = f.merge_tail_prepare(1).unwrap();
    assert_eq!(p.replaces_from(), 1);
    let retired = f.install_merged(p).unwrap();
    assert_eq!(retired, layers[1..].to_vec());
    let now = f.layers();
    assert_eq!(now.len(), 2);
    assert_eq!(now[0], layers[0], "the base is kept");
    assert_eq!(dump(&f).unwrap(), before, "merged in memory");
    let g = mem_open(&storage, &now).unwrap();
    assert_eq!(dump(&g).unwrap(), before, "reopened from [base, merged]");
    // Later flushes stack on the merged layer as on any other.
    f.write_array("keep", &[4], nd(&[2], vec![8.0f32, 8.0]).view())
        .unwrap();
    let mut next = now.clone();
    next.push(f.flush().unwrap().unwrap());
    assert_eq!(
        dump(&mem_open(&storage, &next).unwrap()).unwrap(),
        dump(&f).unwrap()
    );
}

/// A merge prepared before another flush is refused (it would drop that
/// flush's data), like a stale compaction.
#[test]
fn a_stale_tail_merge_is_refused() {
    let (_, mut f) = mem_file(ArrayFileOptions::default());
    f.define_array::<u8>("a", dims(1), vec![4], None, None)
        .unwrap();
    for v in 0..3u8 {
        f.write_array("a", &[0], nd(&[1], vec![v]).view()).unwrap();
        f.flush().unwrap();
    }
    let p = f.merge_tail_prepare(1).unwrap();
    f.write_array("a", &[1], nd(&[1], vec![9u8]).view())
        .unwrap();
    f.flush().unwrap();
    assert!(matches!(
        f.install_merged(p),
        Err(array_format::Error::StalePreparedLayer)
    ));
}
