//! The handle's table of array files (opened lazily) and of array
//! directories (ids the manifest assigns).

use std::sync::Arc;

use array_format::{ArrayFile, ArrayFileOptions};
use indexmap::IndexMap;

use super::{FileHandle, FileSlot, Inner};
use crate::error::Result;

impl Inner {
    pub(crate) fn file_options(&self) -> ArrayFileOptions {
        ArrayFileOptions {
            compression: self.compression,
            pending_budget_bytes: self.options.pending_budget_bytes,
        }
    }

    /// [`Inner::file`] for async callers: opening an array file decodes its
    /// layers' headers and footers (on object stores, requests), so a file
    /// not open yet is opened on the blocking pool, never on a runtime worker.
    pub(crate) async fn file_async(self: &Arc<Self>, array: &str) -> Result<Option<FileHandle>> {
        if let Some(FileSlot::Open(f)) = self.files.lock().get(array) {
            return Ok(Some(Arc::clone(f)));
        }
        let inner = Arc::clone(self);
        let array = array.to_owned();
        tokio::task::spawn_blocking(move || inner.file(&array))
            .await
            .expect("array-file open task panicked")
    }

    /// The array file for `array`, opened on first use; `None` if there is none.
    pub(crate) fn file(&self, array: &str) -> Result<Option<FileHandle>> {
        let mut files = self.files.lock();
        let Some(slot) = files.get_mut(array) else {
            return Ok(None);
        };
        match slot {
            FileSlot::Open(f) => Ok(Some(Arc::clone(f))),
            FileSlot::Unopened(handles) => {
                let dir = self
                    .dir_of(array)
                    .expect("a committed array has a directory");
                let mut f = ArrayFile::open_with_handles(
                    Arc::clone(&self.storage),
                    &self.root.join(dir),
                    handles.clone(),
                    self.file_options(),
                    Arc::clone(&self.cache),
                )?;
                f.share_budget(Arc::clone(&self.pending_budget));
                let f = Arc::new(tokio::sync::RwLock::new(f));
                *slot = FileSlot::Open(Arc::clone(&f));
                Ok(Some(f))
            }
        }
    }

    /// The array file for `array`, created empty if there is none.
    pub(crate) fn file_or_create(&self, array: &str) -> Result<FileHandle> {
        if let Some(f) = self.file(array)? {
            return Ok(f);
        }
        let dir = self.dir_or_assign(array);
        let mut f = ArrayFile::create(
            Arc::clone(&self.storage),
            &self.root.join(dir),
            self.file_options(),
            Arc::clone(&self.cache),
        )?;
        f.share_budget(Arc::clone(&self.pending_budget));
        let f = Arc::new(tokio::sync::RwLock::new(f));
        self.files
            .lock()
            .insert(array.to_owned(), FileSlot::Open(Arc::clone(&f)));
        Ok(f)
    }

    /// Open array files, sorted by name.
    pub(crate) fn open_files(&self) -> Vec<(String, FileHandle)> {
        let files = self.files.lock();
        let mut v: Vec<_> = files
            .iter()
            .filter_map(|(k, s)| match s {
                FileSlot::Open(f) => Some((k.clone(), Arc::clone(f))),
                FileSlot::Unopened(_) => None,
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub(crate) fn forget_file(&self, array: &str) {
        self.files.lock().remove(array);
    }

    /// The directory of `array` (relative to the root), if it has one.
    pub(crate) fn dir_of(&self, array: &str) -> Option<String> {
        self.dirs.lock().by_array.get(array).cloned()
    }

    /// The directory of `array`, assigning a fresh id (never used before in
    /// this store) to a new array.
    pub(crate) fn dir_or_assign(&self, array: &str) -> String {
        let mut t = self.dirs.lock();
        if let Some(d) = t.by_array.get(array) {
            return d.clone();
        }
        let d = crate::registry::dir_id(t.next);
        t.next += 1;
        t.by_array.insert(array.to_owned(), d.clone());
        d
    }

    /// Forgets the directory of an array that was dropped: if the name is used
    /// again, it gets a new directory.
    pub(crate) fn forget_dir(&self, array: &str) {
        self.dirs.lock().by_array.remove(array);
    }

    /// True when some array this handle knows lives in `dir`.
    pub(crate) fn dir_in_use(&self, dir: &str) -> bool {
        self.dirs.lock().by_array.values().any(|d| d == dir)
    }

    /// Directories of `arrays` and the next id, for a new manifest.
    pub(crate) fn dirs_for<'a>(
        &self,
        arrays: impl Iterator<Item = &'a String>,
    ) -> (IndexMap<String, String>, u64) {
        let t = self.dirs.lock();
        let dirs = arrays
            .map(|a| {
                let d = t
                    .by_array
                    .get(a)
                    .expect("every array in a commit has a directory");
                (a.clone(), d.clone())
            })
            .collect();
        (dirs, t.next)
    }
}
