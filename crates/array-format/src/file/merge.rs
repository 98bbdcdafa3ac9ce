//! Tail merges: the newest layers of an array file merged into one delta
//! layer, leaving the older layers (the base) untouched, as a size-tiered LSM
//! does. A flush that leaves too many layers merges the small tail, so the
//! layer count stays bounded without rewriting a large base every time;
//! the base is rewritten (full compaction) only once the tail has grown as
//! large as the base.

use super::index::FOLD_LIMIT;
use super::{
    ArrayFile, Committed, Error, Footer, LayerId, Loc, MergedIndex, NameMap, Path, PreparedKind,
    PreparedLayer, Result,
};

/// What to do with an array file that has too many layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergePlan {
    /// Rewrite every layer as one base ([`ArrayFile::compact_prepare`]).
    Full,
    /// Merge the layers from this index on into one delta
    /// ([`ArrayFile::merge_tail_prepare`]); earlier layers stay.
    Tail(usize),
}

impl ArrayFile {
    /// How to bring this file back under `max_layers` layers, or `None` if it
    /// is not over: merge every layer after the oldest into one delta while
    /// their bytes are fewer than the oldest layer's, else rewrite the base.
    /// Each byte is then rewritten O(log(total / delta)) times, not once per
    /// merge.
    pub fn merge_plan(&self, max_layers: usize) -> Option<MergePlan> {
        if self.layers.len() <= max_layers.max(1) {
            return None;
        }
        let base = self.layers[0].handle.len();
        let tail: u64 = self.layers[1..].iter().map(|l| l.handle.len()).sum();
        if max_layers >= 2 && tail < base {
            Some(MergePlan::Tail(1))
        } else {
            Some(MergePlan::Full)
        }
    }

    /// Writes the combined effect of the committed layers from index `from` on
    /// as one new delta layer (stored chunks copied without decoding, checksums
    /// checked; the footers merged as a stream in name order, `walk.rs`, so
    /// memory does not grow with the number of arrays). No input layer is changed; install it with
    /// [`ArrayFile::install_merged`] once the caller has committed it.
    pub fn merge_tail_prepare(&self, from: usize) -> Result<PreparedLayer> {
        assert!(
            from >= 1 && from < self.layers.len(),
            "a tail merge keeps at least one layer and merges at least one"
        );
        let (path, uid) = self.new_layer_path('d');
        let result = self.write_merged(&path, uid, from);
        if result.is_err() {
            let _ = self.storage.remove_file(&path);
        }
        result
    }

    /// Replaces the layers a tail merge was built from by the merged layer;
    /// returns the retired layers, which the caller removes after committing.
    pub fn install_merged(&mut self, prepared: PreparedLayer) -> Result<Vec<LayerId>> {
        let PreparedKind::Merge { sources, from } = &prepared.kind else {
            return Err(Error::StalePreparedLayer);
        };
        if *sources != self.layer_uids() {
            return Err(Error::StalePreparedLayer);
        }
        let from = *from;
        let from_u32 = u32::try_from(from).expect("fewer than 2^32 layers");
        // Built states are re-pointed only when they are few (then the whole
        // map is cheap to copy) and the merged layer's records are in memory;
        // otherwise they are dropped and built from the footers on next use,
        // so installing a merge never holds every name.
        let small = self
            .index
            .all
            .get()
            .is_some_and(|all| all.len() <= FOLD_LIMIT);
        let updated = match &prepared.footer {
            Some(footer) if small => {
                Some(self.repointed(footer, from_u32, &prepared.layer.path)?)
            }
            _ => None,
        };
        let retired: Vec<LayerId> = self.layers()[from..].to_vec();
        self.layers.truncate(from);
        self.layers.push(prepared.layer);
        self.index = updated.map_or_else(MergedIndex::default, MergedIndex::with_all);
        Ok(retired)
    }

    /// The whole map (built, and small) with every state's tail chunks
    /// re-pointed to the merged layer, which becomes layer `from`.
    fn repointed(&self, footer: &Footer, from_u32: u32, path: &Path) -> Result<NameMap<Committed>> {
        // Every committed chunk from the tail is in the merged layer, under the
        // same index: re-point it there.
        let mut entries = std::collections::HashMap::new();
        for rec in &footer.records {
            for e in &rec.chunks {
                entries.insert((rec.name.as_str(), e.chunk_idx), e.clone());
            }
        }
        let mut updated = self.index.all.get().expect("checked by the caller").clone();
        for (name, c) in &mut updated {
            if c.defined_in >= from_u32 {
                c.defined_in = from_u32;
            }
            for (&idx, loc) in &mut c.chunks {
                if loc.layer >= from_u32 {
                    let Some(e) = entries.get(&(name.as_str(), idx)) else {
                        return Err(Error::corrupt(
                            path,
                            0,
                            format!("merged layer lacks chunk {idx} of {name:?}"),
                        ));
                    };
                    *loc = Loc {
                        layer: from_u32,
                        entry: e.clone(),
                    };
                }
            }
        }
        Ok(updated)
    }
}
