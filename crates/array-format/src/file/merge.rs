//! Tail merges: the newest layers of an array file merged into one delta
//! layer, leaving the older layers (the base) untouched, as a size-tiered LSM
//! does. A flush that leaves too many layers merges the small tail, so the
//! layer count stays bounded without rewriting a large base every time;
//! the base is rewritten (full compaction) only once the tail has grown as
//! large as the base.

use super::{
    ArrayFile, Error, LayerId, LayerWriter, Loc, MergedIndex, Path, PreparedKind, PreparedLayer,
    RecordKind, Result,
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
    /// checked). No input layer is changed; install it with
    /// [`ArrayFile::install_merged`] once the caller has committed it.
    pub fn merge_tail_prepare(&self, from: usize) -> Result<PreparedLayer> {
        assert!(
            from >= 1 && from < self.layers.len(),
            "a tail merge keeps at least one layer and merges at least one"
        );
        let (path, uid) = self.new_layer_path('d');
        let result = self.merge_tail_to(&path, uid, from);
        if result.is_err() {
            let _ = self.storage.remove_file(&path);
        }
        result
    }

    fn merge_tail_to(&self, path: &Path, uid: u128, from: usize) -> Result<PreparedLayer> {
        let from_u32 = u32::try_from(from).expect("fewer than 2^32 layers");
        // Names the tail deleted and did not define again: a Delete record
        // (harmless where the older layers never had the name).
        let all = self.all()?;
        let mut mentioned: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for layer in &self.layers[from..] {
            for rec in layer.all_records_uncached()? {
                if !all.contains_key(&rec.name) && seen.insert(rec.name.clone()) {
                    mentioned.push(rec.name);
                }
            }
        }
        let mut w = LayerWriter::create(self.storage.as_ref(), path, uid)?;
        for name in &mentioned {
            w.begin_array(name, RecordKind::Delete, None);
        }
        for (name, c) in all {
            let kind = if c.defined_in >= from_u32 {
                RecordKind::Define
            } else if c.chunks.values().any(|l| l.layer >= from_u32) {
                RecordKind::Update
            } else {
                continue;
            };
            w.begin_array(name, kind, Some(c.schema.clone()));
            for (&idx, loc) in c.chunks.iter().filter(|(_, l)| l.layer >= from_u32) {
                self.copy_chunk(&mut w, idx, loc)?;
            }
        }
        self.finish_layer(
            w,
            PreparedKind::Merge {
                sources: self.layer_uids(),
                from,
            },
        )
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
        // Every committed chunk from the tail is in the merged layer, under the
        // same index: re-point it there.
        let mut entries = std::collections::HashMap::new();
        for rec in &prepared.footer.records {
            for e in &rec.chunks {
                entries.insert((rec.name.as_str(), e.chunk_idx), e.clone());
            }
        }
        let mut updated = self.all()?.clone();
        for (name, c) in &mut updated {
            if c.defined_in >= from_u32 {
                c.defined_in = from_u32;
            }
            for (&idx, loc) in &mut c.chunks {
                if loc.layer >= from_u32 {
                    let Some(e) = entries.get(&(name.as_str(), idx)) else {
                        return Err(Error::corrupt(
                            &prepared.layer.path,
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
        let retired: Vec<LayerId> = self.layers()[from..].to_vec();
        self.layers.truncate(from);
        self.layers.push(prepared.layer);
        self.index = MergedIndex::with_all(updated);
        Ok(retired)
    }
}
