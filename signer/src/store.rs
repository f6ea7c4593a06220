//! The signer's own RocksDB: key records (public key, GUN, role, backend
//! and the backend's handle — for software keys the encrypted key, never a
//! plaintext one) and the per-key high-water mark of the signing policy.
//! Every write is synced before the caller goes on: a signature never
//! leaves before its high-water mark is durable.

use std::path::Path;

use base64::Engine as _;
use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Options, WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::policy::HighWater;

const CF_KEYS: &str = "keys";
const CF_HIGH_WATER: &str = "high_water";

/// The write-ahead log's size past which RocksDB flushes the families holding its oldest file.
pub const MAX_TOTAL_WAL_BYTES: u64 = 32 << 20;
/// Memory for memtables across both families; past it RocksDB flushes the larger.
pub const MEMTABLE_BUDGET_BYTES: usize = 32 << 20;
/// The block cache, shared by both families.
pub const BLOCK_CACHE_BYTES: usize = 8 << 20;

/// Options of the database and of each family (one block cache for all): bounded memory and
/// write-ahead log, LZ4, Bloom filters (every read is a point lookup by key ID). RocksDB's
/// defaults gave each family up to two 64 MiB memtables and a log bounded only at several GB.
fn options(cache: &Cache) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
    opts.set_db_write_buffer_size(MEMTABLE_BUDGET_BYTES);
    opts.set_write_buffer_size(MEMTABLE_BUDGET_BYTES / 2);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    opts.set_block_based_table_factory(&table);
    opts
}

/// A key the signer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The TUF key ID.
    pub key_id: String,
    /// The collection it was made for.
    pub gun: String,
    /// The role it was made for.
    pub role: String,
    /// `ecdsa` or `ed25519`.
    pub algorithm: String,
    /// The public key as TUF lists it.
    #[serde(with = "b64")]
    pub public: Vec<u8>,
    /// The backend holding the private key (`software`, `pkcs11`).
    pub backend: String,
    /// The backend's handle.
    #[serde(with = "b64")]
    pub handle: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[error("signer store: {0}")]
pub struct StoreError(String);

fn err(op: &str) -> impl FnOnce(rocksdb::Error) -> StoreError + '_ {
    move |e| StoreError(format!("{op}: {e}"))
}

/// The signer's database.
pub struct Store {
    db: DB,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let opts = options(&cache);
        let cfs = [CF_KEYS, CF_HIGH_WATER]
            .into_iter()
            .map(|n| ColumnFamilyDescriptor::new(n, options(&cache)));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(err("open"))?;
        Ok(Store { db })
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError(format!("column family {name} missing")))
    }

    fn put_synced(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.put_cf_opt(self.cf(cf)?, key, value, &wo).map_err(err("write"))
    }

    /// Saves `record`.
    pub fn put_key(&self, record: &KeyRecord) -> Result<(), StoreError> {
        let v = serde_json::to_vec(record).map_err(|e| StoreError(e.to_string()))?;
        self.put_synced(CF_KEYS, record.key_id.as_bytes(), &v)
    }

    /// The key `key_id`, if held.
    pub fn key(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        match self
            .db
            .get_cf(self.cf(CF_KEYS)?, key_id.as_bytes())
            .map_err(err("read"))?
        {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError(format!("key record {key_id}: {e}"))),
        }
    }

    /// Every key held.
    pub fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_KEYS)?, rocksdb::IteratorMode::Start) {
            let (_, v) = item.map_err(err("iterate"))?;
            out.push(serde_json::from_slice(&v).map_err(|e| StoreError(format!("key record: {e}")))?);
        }
        Ok(out)
    }

    /// Forgets the key `key_id` and its high-water mark.
    pub fn delete_key(&self, key_id: &str) -> Result<(), StoreError> {
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete_cf(self.cf(CF_KEYS)?, key_id.as_bytes());
        batch.delete_cf(self.cf(CF_HIGH_WATER)?, key_id.as_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo).map_err(err("delete"))
    }

    /// The last signature made with `key_id`.
    pub fn high_water(&self, key_id: &str) -> Result<Option<HighWater>, StoreError> {
        let Some(v) = self
            .db
            .get_cf(self.cf(CF_HIGH_WATER)?, key_id.as_bytes())
            .map_err(err("read"))?
        else {
            return Ok(None);
        };
        // 40 bytes (version, content SHA-256) before named-file binding;
        // 48 with the named-file version after them.
        if v.len() != 40 && v.len() != 48 {
            return Err(StoreError(format!("high-water mark of {key_id} is corrupt")));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v[at..at + 8]);
            u64::from_be_bytes(b)
        };
        let mut sha = [0u8; 32];
        sha.copy_from_slice(&v[8..40]);
        Ok(Some(HighWater {
            version: u64_at(0),
            content_sha256: sha,
            named_version: if v.len() == 48 { u64_at(40) } else { 0 },
        }))
    }

    /// Records (durably) the last signature made with `key_id`.
    pub fn set_high_water(&self, key_id: &str, hw: &HighWater) -> Result<(), StoreError> {
        let mut v = hw.version.to_be_bytes().to_vec();
        v.extend_from_slice(&hw.content_sha256);
        v.extend_from_slice(&hw.named_version.to_be_bytes());
        self.put_synced(CF_HIGH_WATER, key_id.as_bytes(), &v)
    }
}

/// A column family's entries (key, value), in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every entry of every column family of a store, read at one point in
/// time: what a backup carries, byte for byte (keys stay encrypted as
/// stored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreDump {
    /// Each column family's name and its entries, in key order.
    pub families: Vec<(String, Entries)>,
}

impl Store {
    /// Opens the store in `dir` read-only. It takes no lock, so it works
    /// while a running signer holds the database, and it sees every write
    /// the signer had synced when it was opened (its write-ahead log is
    /// read too); it writes nothing in `dir`.
    pub fn open_read_only(dir: &Path) -> Result<Store, StoreError> {
        let opts = Options::default();
        let names = DB::list_cf(&opts, dir).map_err(err("open read-only"))?;
        let db = DB::open_cf_for_read_only(&opts, dir, names, false).map_err(err("open read-only"))?;
        Ok(Store { db })
    }

    /// Every column family's entries, read from one RocksDB snapshot.
    pub fn dump(&self, dir: &Path) -> Result<StoreDump, StoreError> {
        let names = DB::list_cf(&Options::default(), dir).map_err(err("list column families"))?;
        let snapshot = self.db.snapshot();
        let mut families = Vec::new();
        for name in names {
            let cf = self.cf(&name)?;
            let mut entries = Vec::new();
            for item in snapshot.iterator_cf(cf, rocksdb::IteratorMode::Start) {
                let (k, v) = item.map_err(err("iterate"))?;
                entries.push((k.to_vec(), v.to_vec()));
            }
            families.push((name, entries));
        }
        Ok(StoreDump { families })
    }

    /// Creates a new store in `dir` (which must hold none) holding exactly
    /// `dump`, written in one synced batch and flushed to its files.
    pub fn create_from(dir: &Path, dump: &StoreDump) -> Result<(), StoreError> {
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut opts = options(&cache);
        opts.set_error_if_exists(true);
        let mut names: Vec<&str> = dump.families.iter().map(|(n, _)| n.as_str()).collect();
        for required in [CF_KEYS, CF_HIGH_WATER] {
            if !names.contains(&required) {
                names.push(required);
            }
        }
        let cfs = names
            .iter()
            .filter(|n| **n != rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
            .map(|n| ColumnFamilyDescriptor::new(*n, options(&cache)));
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(err("create"))?;
        let store = Store { db };
        let mut batch = rocksdb::WriteBatch::default();
        for (name, entries) in &dump.families {
            let cf = store.cf(name)?;
            for (k, v) in entries {
                batch.put_cf(cf, k, v);
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        store.db.write_opt(batch, &wo).map_err(err("write"))?;
        for name in &names {
            store.db.flush_cf(store.cf(name)?).map_err(err("flush"))?;
        }
        Ok(())
    }

    /// How many high-water marks the store holds.
    pub fn high_water_count(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self
            .db
            .iterator_cf(self.cf(CF_HIGH_WATER)?, rocksdb::IteratorMode::Start)
        {
            item.map_err(err("iterate"))?;
            n += 1;
        }
        Ok(n)
    }
}

impl KeyRecord {
    /// The public key as base64 (for logs and Notary's key JSON).
    pub fn public_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.public)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_marks_survive_a_reopen() {
        let d = tempfile::tempdir().unwrap();
        let r = KeyRecord {
            key_id: "ab".repeat(32),
            gun: "g".into(),
            role: "timestamp".into(),
            algorithm: "ecdsa".into(),
            public: vec![1, 2, 3],
            backend: "software".into(),
            handle: b"jwe".to_vec(),
        };
        {
            let s = Store::open(d.path()).unwrap();
            s.put_key(&r).unwrap();
            s.set_high_water(
                &r.key_id,
                &HighWater {
                    version: 7,
                    content_sha256: [9; 32],
                    named_version: 0,
                },
            )
            .unwrap();
        }
        let s = Store::open(d.path()).unwrap();
        assert_eq!(s.key(&r.key_id).unwrap().unwrap(), r);
        assert_eq!(s.keys().unwrap(), vec![r.clone()]);
        assert_eq!(s.high_water(&r.key_id).unwrap().unwrap().version, 7);
        // Read-only while the store is open (no lock taken): the dump
        // carries every family, and a store made from it reads the same.
        let ro = Store::open_read_only(d.path()).unwrap();
        let dump = ro.dump(d.path()).unwrap();
        assert!(ro.put_key(&r).is_err(), "a read-only store writes nothing");
        let copy = tempfile::tempdir().unwrap();
        let at = copy.path().join("db");
        Store::create_from(&at, &dump).unwrap();
        assert!(
            Store::create_from(&at, &dump).is_err(),
            "an existing store is not overwritten"
        );
        let c = Store::open_read_only(&at).unwrap();
        assert_eq!(c.dump(&at).unwrap(), dump);
        assert_eq!(c.keys().unwrap(), vec![r.clone()]);
        assert_eq!(
            (
                c.high_water_count().unwrap(),
                c.high_water(&r.key_id).unwrap().unwrap().version
            ),
            (1, 7)
        );
        s.delete_key(&r.key_id).unwrap();
        assert!(s.key(&r.key_id).unwrap().is_none());
        assert!(s.high_water(&r.key_id).unwrap().is_none());
    }
}
