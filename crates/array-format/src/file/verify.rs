//! Verification: every live block read, checksummed and decoded.

use super::{decode_entry, open_layer_handle, read_stored, Arc, ArrayFile, Result};

impl ArrayFile {
    /// Reads and decodes every chunk of every committed layer (live or
    /// shadowed by a newer layer), checking footers (every footer block, read
    /// from storage, not the cache) and block checksums again, and that the
    /// layers agree about every name; returns the number of chunks checked.
    pub fn verify(&self) -> Result<u64> {
        let mut n = 0;
        for layer in &self.layers {
            let reread = open_layer_handle(Arc::clone(&layer.handle), &layer.path)?;
            for rec in &reread.all_records_uncached()? {
                let Some(schema) = &rec.schema else { continue };
                let width = schema.dtype.size_bytes().unwrap_or(0);
                for e in &rec.chunks {
                    decode_entry(&read_stored(layer, e)?, e, width, &layer.path)?;
                    n += 1;
                }
            }
        }
        self.all()?;
        Ok(n)
    }
}
