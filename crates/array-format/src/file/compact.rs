//! Compaction: every live chunk copied, unchanged, into one new base layer.

use super::{ArrayFile, Error, LayerId, MergedIndex, NameMap, PreparedKind, PreparedLayer, Result};

impl ArrayFile {
    /// Writes the committed state (not the pending changes) as one new base layer.
    /// Stored chunks are copied as they are, one at a time, without decoding,
    /// and the layers' footers are merged as a stream in name order
    /// (`walk.rs`), so memory stays bounded whatever the file size or the
    /// number of arrays. No input layer is changed.
    pub fn compact_prepare(&self) -> Result<PreparedLayer> {
        let (path, uid) = self.new_layer_path('b');
        let result = self.write_merged(&path, uid, 0);
        if result.is_err() {
            let _ = self.storage.remove_file(&path);
        }
        result
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
        // The base holds every name: its footer, when kept in memory (a small
        // one), is the whole map; otherwise states are built from it on use.
        let old_index =
            std::mem::replace(&mut self.index, MergedIndex::with_all(NameMap::default()));
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
