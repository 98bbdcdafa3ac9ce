//! [`StoreConfig`], [`OpenOptions`] and [`MetaFormat`].

use crate::registry::Policy;
use array_format::{Codec, Compression, DeltaCacheConfig};

/// On-disk encoding of the registry (`atlas.json`). Detected on open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetaFormat {
    /// Human-readable JSON (the default).
    #[default]
    Json,
    /// `MessagePack` compressed with Zstd behind an 8-byte magic: several times
    /// smaller and faster to load, for registries of very many datasets.
    Binary,
}

impl MetaFormat {
    /// `"json"` or `"binary"`.
    pub fn name(self) -> &'static str {
        match self {
            MetaFormat::Json => "json",
            MetaFormat::Binary => "binary",
        }
    }
}

/// Configuration for creating a store. `codec`, `shuffle` and `meta_format`
/// persist in the store, so opening needs no configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Codec for new chunks.
    pub codec: Codec,
    /// Byte-shuffle fixed-width cells before compressing.
    pub shuffle: bool,
    /// Registry encoding.
    pub meta_format: MetaFormat,
    /// Cache sizes of the handle.
    pub cache: DeltaCacheConfig,
    /// Unflushed chunk bytes held in memory, for the whole store (all arrays
    /// together), before the writing array spills to a scratch file.
    pub pending_budget_bytes: u64,
    /// Layer-merge trigger and garbage-collection grace period, stored in the
    /// manifest (every later writer follows it).
    pub policy: Policy,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let c = Compression::default();
        StoreConfig {
            codec: c.codec,
            shuffle: c.shuffle,
            meta_format: MetaFormat::Json,
            cache: DeltaCacheConfig::default(),
            pending_budget_bytes: 256 << 20,
            policy: Policy::default(),
        }
    }
}

impl StoreConfig {
    pub(crate) fn compression(&self) -> Compression {
        Compression {
            codec: self.codec,
            shuffle: self.shuffle,
        }
    }

    pub(crate) fn open_options(&self) -> OpenOptions {
        OpenOptions {
            cache: self.cache,
            pending_budget_bytes: self.pending_budget_bytes,
            write: true,
        }
    }
}

/// Per-handle settings for opening a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Cache sizes.
    pub cache: DeltaCacheConfig,
    /// Unflushed chunk bytes held in memory by the whole handle (all arrays
    /// together) before spilling.
    pub pending_budget_bytes: u64,
    /// Take the writer lock at open instead of at the first mutation.
    pub write: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        let c = StoreConfig::default();
        OpenOptions {
            cache: c.cache,
            pending_budget_bytes: c.pending_budget_bytes,
            write: false,
        }
    }
}
