//! Flush: the pending layer written as one new delta layer (two-phase:
//! `write_pending`, then `install`).

use super::{
    random_uid, Arc, ArrayFile, Error, Layer, LayerId, LayerWriter, Path, PathBuf, PreparedKind,
    PreparedLayer, Result,
};
use crate::layer::{Footer, FooterIndex};
use crate::storage::{Storage, WriteHandle};

/// A layer file [`ArrayFile::write_pending_unsynced`] wrote, not yet
/// durable: [`UnsyncedLayer::sync`] fsyncs it and its directory. Dropped
/// unsynced, its file is garbage (no manifest names it) that
/// [`UnsyncedLayer::discard`] or the orphan sweep removes.
#[derive(Debug)]
pub struct UnsyncedLayer {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    path: PathBuf,
    uid: u128,
    footer: Footer,
    index: FooterIndex,
    out: Box<dyn WriteHandle>,
    kind: PreparedKind,
}

impl UnsyncedLayer {
    /// The layer file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The new layer's id (its file's name).
    pub fn id(&self) -> LayerId {
        LayerId(crate::layer::file_name(&self.path))
    }

    /// Its size in bytes.
    pub fn len_bytes(&self) -> u64 {
        self.out.position()
    }

    /// The directory that holds it, whose entry for the file
    /// [`UnsyncedLayer::sync_file`] leaves to the caller to fsync.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Fsyncs the file and its directory; the layer, ready to install
    /// once committed. On an error the file is removed (best effort).
    pub fn sync(self) -> Result<PreparedLayer> {
        self.sync_with(true)
    }

    /// [`UnsyncedLayer::sync`] without the directory's fsync: the caller
    /// fsyncs [`UnsyncedLayer::dir`] (at the same time, or once for many
    /// layers of one directory) before a commit names the layer.
    pub fn sync_file(self) -> Result<PreparedLayer> {
        self.sync_with(false)
    }

    fn sync_with(mut self, with_dir: bool) -> Result<PreparedLayer> {
        let result = self
            .out
            .sync()
            .and_then(|()| {
                if with_dir {
                    self.storage.sync_dir(&self.dir)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| self.storage.open_read(&self.path));
        match result {
            Ok(handle) => Ok(PreparedLayer {
                layer: Arc::new(Layer::new(self.path, self.uid, handle, self.index)),
                footer: Some(self.footer),
                kind: self.kind,
            }),
            Err(e) => {
                let _ = self.storage.remove_file(&self.path);
                Err(e)
            }
        }
    }

    /// Closes and removes the file (best effort): the commit it was written
    /// for failed.
    pub fn discard(self) {
        let UnsyncedLayer {
            storage, path, out, ..
        } = self;
        drop(out);
        let _ = storage.remove_file(&path);
    }
}

impl ArrayFile {
    pub(super) fn new_layer_path(&self, prefix: char) -> (PathBuf, u128) {
        let uid = random_uid();
        (self.dir.join(format!("{prefix}-{uid:032x}.af")), uid)
    }

    /// Writes the pending changes as a new layer file (fsynced, with its directory
    /// entry fsynced) without changing this file's state. `None` when nothing is pending.
    /// Install it with [`ArrayFile::install`] once the caller has committed it.
    pub fn write_pending(&self) -> Result<Option<PreparedLayer>> {
        self.write_pending_unsynced()?
            .map(UnsyncedLayer::sync)
            .transpose()
    }

    /// [`ArrayFile::write_pending`] up to the `fsync`s: the layer file is
    /// written, not yet durable. [`UnsyncedLayer::sync`] makes it durable
    /// and gives the layer to install; a commit writing many files syncs
    /// them together.
    pub fn write_pending_unsynced(&self) -> Result<Option<UnsyncedLayer>> {
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

    fn write_pending_to(&self, path: &Path, uid: u128) -> Result<UnsyncedLayer> {
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
        let (path, uid, footer, index, mut out) = w.finish_unsynced()?;
        // Held until the commit syncs every layer: without its buffer.
        out.release_buffer()?;
        Ok(UnsyncedLayer {
            storage: Arc::clone(&self.storage),
            dir: self.dir.clone(),
            path,
            uid,
            footer,
            index,
            out,
            kind: PreparedKind::Delta {
                generation: self.pending.generation,
            },
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
