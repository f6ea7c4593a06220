//! openraft's own storage test suite against LogStore + StateMachine on a fresh RocksDB.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use seal_raft::{LogStore, StateMachine, TypeConfig};
use seal_storage::Store;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path().join("db")).expect("open store");
        let sm = StateMachine::new(store.clone(), &dir.path().join("snapshots")).expect("state machine");
        Ok((dir, LogStore::new(store), sm))
    }
}

#[test]
#[allow(clippy::result_large_err)] // the suite's own error type
fn openraft_storage_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder)
}
