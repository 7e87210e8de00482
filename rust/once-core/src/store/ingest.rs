//! What comes into the store from outside a local save (the remote cache's downloads), written
//! with the store's one protocol: a temporary file in the store, its bytes hashed as they come,
//! its mode set and its data synced, renamed into place, and counted in the usage ledger. Blobs
//! before entries, all under the store's shared lock, so a collection never deletes a blob
//! whose entry is about to be written and a reader never finds an entry naming a missing blob.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use super::commit::write_entry_file;
use super::{
    decode_entry, encode_entry, entry_json, seal, ActionEntry, Store, StoreLock, TempFile,
    BLOB_MODE, CAS,
};
use crate::error::{Error, IoContext};
use crate::hash::Digest;
use crate::usage_ledger;
use crate::Result;

/// Held while blobs and then their entry come in (`Store::ingesting`): a collection waits
/// until it is dropped.
pub struct Ingesting {
    _lock: StoreLock,
}

/// A blob being written into the store: `commit` keeps it only if its bytes hash to the digest
/// it was asked for; dropped uncommitted, it leaves nothing behind.
pub struct BlobWriter {
    file: File,
    temp: TempFile,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl BlobWriter {
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        self.file.write_all(chunk).at(&self.temp.path)
    }

    /// Keep the blob if it is the one `expected` names: false (and nothing kept) when its
    /// bytes hash to something else.
    pub fn commit(self, store: &Store, expected: &Digest) -> Result<bool> {
        if Digest(*self.hasher.finalize().as_bytes()) != *expected {
            return Ok(false); // `temp` is removed on drop: corrupt bytes never reach the store
        }
        seal(&self.file, &self.temp.path, BLOB_MODE)?;
        self.temp.persist(&store.blob_path(expected))?;
        usage_ledger::add(store.root(), self.bytes);
        Ok(true)
    }

    /// Bytes written so far.
    #[must_use]
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }
}

impl Store {
    /// The store's shared lock, held from the first blob of an entry to the entry itself.
    pub fn ingesting(&self) -> Result<Ingesting> {
        Ok(Ingesting {
            _lock: StoreLock::shared(self.root())?,
        })
    }

    /// A new blob, written into a temporary file of the store (its folder is known only once
    /// its digest is, so it starts in `cas/`, on the same file system as every `cas/xx/`).
    pub fn blob_writer(&self) -> Result<BlobWriter> {
        let (file, temp) = TempFile::create(&self.root().join(CAS))?;
        Ok(BlobWriter {
            file,
            temp,
            hasher: blake3::Hasher::new(),
            bytes: 0,
        })
    }

    /// File `json` (an entry's body, its manifest checked by `check_manifest`) as the entry of
    /// `key`, in the store's own envelope, as a save files its entry.
    pub fn put_entry(&self, key: &str, json: &[u8]) -> Result<()> {
        let path = self.entry_path(key).ok_or_else(|| Error::Corrupt {
            path: PathBuf::from(key),
            message: "not a plain key".to_owned(),
        })?;
        let body = encode_entry(key, json);
        write_entry_file(&body, path)?;
        usage_ledger::add(self.root(), body.len() as u64);
        Ok(())
    }

    /// The entry of `key` and its JSON body, as they would travel to another store; None when
    /// there is none, or it is not sound.
    #[must_use]
    pub fn entry_to_share(&self, key: &str) -> Option<(ActionEntry, Vec<u8>)> {
        let file = std::fs::read(self.entry_path(key)?).ok()?;
        let entry = decode_entry(key, &file)?;
        Some((entry, entry_json(key, &file)?.to_vec()))
    }
}
