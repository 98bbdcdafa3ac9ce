//! Compaction: every live chunk copied, unchanged, into one new base layer.

use super::{
    read_stored, ArrayFile, BlockMeta, Error, IndexMap, LayerId, LayerWriter, Loc, MergedIndex,
    Path, PreparedKind, PreparedLayer, RecordKind, Result,
};

impl ArrayFile {
    /// Writes the committed state (not the pending changes) as one new base layer.
    /// Stored chunks are copied as they are, one at a time, without decoding, so
    /// memory stays bounded whatever the file size. No input layer is changed.
    pub fn compact_prepare(&self) -> Result<PreparedLayer> {
        let (path, uid) = self.new_layer_path('b');
        let result = self.compact_to(&path, uid);
        if result.is_err() {
            let _ = self.storage.remove_file(&path);
        }
        result
    }

    pub(super) fn compact_to(&self, path: &Path, uid: u128) -> Result<PreparedLayer> {
        let mut w = LayerWriter::create(self.storage.as_ref(), path, uid)?;
        for (name, c) in self.all()? {
            w.begin_array(name, RecordKind::Define, Some(c.schema.clone()));
            for (&idx, loc) in &c.chunks {
                self.copy_chunk(&mut w, idx, loc)?;
            }
        }
        self.finish_layer(
            w,
            PreparedKind::Base {
                sources: self.layer_uids(),
            },
        )
    }

    /// Copies one committed chunk's stored bytes, unchanged and checksum
    /// checked, into a layer being written (compaction and tail merges).
    pub(super) fn copy_chunk(&self, w: &mut LayerWriter, idx: u64, loc: &Loc) -> Result<()> {
        let layer = &self.layers[loc.layer as usize];
        let e = &loc.entry;
        let stored = read_stored(layer, e)?;
        if crc32c::crc32c(&stored) != e.crc {
            return Err(Error::corrupt(
                &layer.path,
                e.offset,
                "block checksum mismatch",
            ));
        }
        let meta = BlockMeta {
            raw_len: e.raw_len,
            codec: e.codec,
            filter: e.filter,
            crc: e.crc,
            stats: e.stats.clone(),
        };
        w.append_chunk(idx, &stored, &meta)
    }

    pub(super) fn layer_uids(&self) -> Vec<u128> {
        self.layers.iter().map(|l| l.uid).collect()
    }

    /// Replaces every committed layer by a base from [`ArrayFile::compact_prepare`];
    /// returns the retired layers, which the caller removes after committing.
    pub fn install_compacted(&mut self, prepared: PreparedLayer) -> Result<Vec<LayerId>> {
        // Only onto the exact layer list it was merged from: a base built before
        // a later flush would silently drop that flush's data.
        if prepared.kind
            != (PreparedKind::Base {
                sources: self.layer_uids(),
            })
        {
            return Err(Error::StalePreparedLayer);
        }
        let retired = self.layers();
        let old_layers = std::mem::take(&mut self.layers);
        // The base holds every name: its footer, in memory, is the whole map.
        let old_index = std::mem::replace(&mut self.index, MergedIndex::with_all(IndexMap::new()));
        if let Err(e) = self.apply(prepared.layer, prepared.footer) {
            self.layers = old_layers;
            self.index = old_index;
            return Err(e);
        }
        Ok(retired)
    }

    /// Compacts and installs in one step; returns the retired layers.
    pub fn compact(&mut self) -> Result<Vec<LayerId>> {
        let p = self.compact_prepare()?;
        self.install_compacted(p)
    }
}
