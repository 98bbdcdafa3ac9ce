//! Flush: the pending layer written as one new delta layer (two-phase:
//! `write_pending`, then `install`).

use super::{
    random_uid, Arc, ArrayFile, Error, Layer, LayerId, LayerWriter, Path, PathBuf, PreparedKind,
    PreparedLayer, Result,
};

impl ArrayFile {
    pub(super) fn new_layer_path(&self, prefix: char) -> (PathBuf, u128) {
        let uid = random_uid();
        (self.dir.join(format!("{prefix}-{uid:032x}.af")), uid)
    }

    /// Writes the pending changes as a new layer file (fsynced, with its directory
    /// entry fsynced) without changing this file's state. `None` when nothing is pending.
    /// Install it with [`ArrayFile::install`] once the caller has committed it.
    pub fn write_pending(&self) -> Result<Option<PreparedLayer>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let (path, uid) = self.new_layer_path('d');
        let result = self.write_pending_to(&path, uid);
        if result.is_err() {
            // Best effort: an unnamed file is garbage either way.
            let _ = self.storage.remove_file(&path);
        }
        result.map(Some)
    }

    pub(super) fn write_pending_to(&self, path: &Path, uid: u128) -> Result<PreparedLayer> {
        let mut w = LayerWriter::create(self.storage.as_ref(), path, uid)?;
        w.reserve(self.pending.arrays.len());
        for (name, arr) in &self.pending.arrays {
            // The schema is an `Arc`.
            w.begin_array(name, arr.kind, arr.schema.clone(), arr.chunks.len());
            for (&idx, chunk) in &arr.chunks {
                let stored = self.pending.stored_bytes(chunk)?;
                w.append_chunk(idx, &stored, &chunk.meta)?;
            }
        }
        self.finish_layer(
            w,
            PreparedKind::Delta {
                generation: self.pending.generation,
            },
        )
    }

    pub(super) fn finish_layer(&self, w: LayerWriter, kind: PreparedKind) -> Result<PreparedLayer> {
        let (path, uid, footer, index) = w.finish()?;
        self.storage.sync_dir(&self.dir)?;
        let handle = self.storage.open_read(&path)?;
        Ok(PreparedLayer {
            layer: Arc::new(Layer::new(path, uid, handle, index)),
            footer: Some(footer),
            kind,
        })
    }

    /// Makes a layer from [`ArrayFile::write_pending`] part of the file and clears
    /// the pending changes it holds.
    pub fn install(&mut self, prepared: PreparedLayer) -> Result<()> {
        if prepared.kind
            != (PreparedKind::Delta {
                generation: self.pending.generation,
            })
        {
            return Err(Error::StalePreparedLayer);
        }
        self.apply(prepared.layer, prepared.footer)?;
        self.pending.clear();
        Ok(())
    }

    /// Writes and installs the pending changes; returns the new layer, or `None`
    /// when nothing was pending. The caller must record the new layer list
    /// ([`ArrayFile::layers`]) to reopen this state.
    pub fn flush(&mut self) -> Result<Option<LayerId>> {
        let Some(p) = self.write_pending()? else {
            return Ok(None);
        };
        let id = p.id();
        self.install(p)?;
        Ok(Some(id))
    }
}
