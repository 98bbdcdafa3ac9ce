//! The bytes of one layer file (see `docs/format.md`).
//!
//! ```text
//! header (32 B) | block | block | … | footer | trailer (32 B)
//! ```
//!
//! **Invariant:** everything decoded here is bounds-checked against the file
//! length before use; hostile counts never drive allocations beyond what the
//! remaining footer bytes could hold.

mod codec;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use codec::{decode_footer, encode_footer};
pub(crate) use writer::{BlockMeta, LayerWriter};

use crate::error::{Error, Result};
use crate::schema::ArraySchema;
use crate::stats::ChunkStats;
use crate::storage::{ReadHandle, Storage};

/// First 8 bytes of every layer file.
pub const MAGIC: [u8; 8] = *b"ATLAS-AF";
/// Last 8 bytes of every layer file.
pub const TRAILER_MAGIC: [u8; 8] = *b"AF-FOOTR";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Header length in bytes.
pub const HEADER_LEN: u64 = 32;
/// Trailer length in bytes.
pub const TRAILER_LEN: u64 = 32;

/// Where one chunk's block lives and how to decode it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ChunkEntry {
    pub chunk_idx: u64,
    pub offset: u64,
    pub stored_len: u64,
    pub raw_len: u64,
    pub codec: u8,
    pub filter: u8,
    pub crc: u32,
    pub stats: ChunkStats,
}

/// What a layer says about one array name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// Chunks written on top of the array as earlier layers leave it.
    Update,
    /// The array is (re)defined here: earlier layers' state for the name is void.
    Define,
    /// The array is deleted here.
    Delete,
}

impl RecordKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            RecordKind::Update => 0,
            RecordKind::Define => 1,
            RecordKind::Delete => 2,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => RecordKind::Update,
            1 => RecordKind::Define,
            2 => RecordKind::Delete,
            _ => return None,
        })
    }
}

/// One array's record in a layer footer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ArrayRecord {
    pub name: String,
    pub kind: RecordKind,
    /// Present unless `kind` is `Delete`.
    pub schema: Option<ArraySchema>,
    /// Sorted by `chunk_idx`, unique.
    pub chunks: Vec<ChunkEntry>,
}

/// A decoded footer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Footer {
    pub uid: u128,
    pub records: Vec<ArrayRecord>,
}

/// An open layer file.
#[derive(Debug)]
pub(crate) struct Layer {
    /// File name within the array directory (the layer's identity in the registry).
    pub name: String,
    pub path: PathBuf,
    /// Random id written at creation; part of every cache key.
    pub uid: u128,
    pub handle: Arc<dyn ReadHandle>,
}

/// Opens and fully validates a layer's header, trailer and footer.
pub(crate) fn open_layer(storage: &dyn Storage, path: &Path) -> Result<(Layer, Footer)> {
    open_layer_handle(storage.open_read(path)?, path)
}

/// Validates an already open layer file (see [`open_layer`]).
pub(crate) fn open_layer_handle(
    handle: Arc<dyn ReadHandle>,
    path: &Path,
) -> Result<(Layer, Footer)> {
    let len = handle.try_len()?;
    if len < HEADER_LEN + TRAILER_LEN {
        return Err(Error::corrupt(
            path,
            0,
            format!("file of {len} bytes is too short to be a layer"),
        ));
    }
    let header = handle.read_vec_at(0, HEADER_LEN as usize)?;
    if header[..8] != MAGIC {
        return Err(Error::corrupt(path, 0, "not a layer file (bad magic)"));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            version,
            supported: FORMAT_VERSION,
        });
    }
    let header_uid = u128::from_le_bytes(header[16..32].try_into().expect("16 bytes"));
    let trailer_at = len - TRAILER_LEN;
    let trailer = handle.read_vec_at(trailer_at, TRAILER_LEN as usize)?;
    if trailer[24..32] != TRAILER_MAGIC {
        return Err(Error::corrupt(
            path,
            trailer_at,
            "bad trailer magic (truncated or incomplete file?)",
        ));
    }
    let footer_offset = u64::from_le_bytes(trailer[0..8].try_into().expect("8 bytes"));
    let footer_len = u64::from_le_bytes(trailer[8..16].try_into().expect("8 bytes"));
    let footer_crc = u32::from_le_bytes(trailer[16..20].try_into().expect("4 bytes"));
    let trailer_version = u32::from_le_bytes(trailer[20..24].try_into().expect("4 bytes"));
    if trailer_version != FORMAT_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            version: trailer_version,
            supported: FORMAT_VERSION,
        });
    }
    if footer_offset < HEADER_LEN || footer_offset.checked_add(footer_len) != Some(trailer_at) {
        return Err(Error::corrupt(
            path,
            trailer_at,
            format!("footer at {footer_offset} of {footer_len} bytes does not end at the trailer"),
        ));
    }
    let footer_len = usize::try_from(footer_len)
        .map_err(|_| Error::corrupt(path, trailer_at, "footer larger than memory"))?;
    let bytes = handle.read_vec_at(footer_offset, footer_len)?;
    if crc32c::crc32c(&bytes) != footer_crc {
        return Err(Error::corrupt(
            path,
            footer_offset,
            "footer checksum mismatch",
        ));
    }
    let footer = decode_footer(&bytes, footer_offset, path)?;
    if footer.uid != header_uid {
        return Err(Error::corrupt(
            path,
            16,
            "header and footer name different layers",
        ));
    }
    // Every block must lie between the header and the footer.
    for rec in &footer.records {
        for c in &rec.chunks {
            let end = c.offset.checked_add(c.stored_len);
            if c.offset < HEADER_LEN || end.is_none_or(|e| e > footer_offset) {
                return Err(Error::corrupt(
                    path,
                    footer_offset,
                    format!(
                        "chunk {} of {:?} points outside the data area ({}+{})",
                        c.chunk_idx, rec.name, c.offset, c.stored_len
                    ),
                ));
            }
        }
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    Ok((
        Layer {
            name,
            path: path.to_owned(),
            uid: footer.uid,
            handle,
        },
        footer,
    ))
}
