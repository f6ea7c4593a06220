//! The threshold backend as the signer core sees every backend: keys made
//! by a DKG with every signer, signatures by k of them, each participant
//! checking the policy and recording its own high-water mark.

use super::*;
use crate::backend::{KeyBackend, NewKey};
use crate::error::{Error, Result};

#[async_trait::async_trait]
impl KeyBackend for Arc<ThresholdBackend> {
    fn name(&self) -> &'static str {
        BACKEND_NAME
    }

    async fn generate(&self, algorithm: Algorithm, gun: &str, role: &str) -> Result<NewKey> {
        let (key_id, public) = self.create_key(algorithm, gun, role).await?;
        // Every participant, this signer among them, stored its share's
        // record when the DKG committed; the core records the same again.
        let record = self.store.key(&key_id)?.ok_or_else(|| {
            Error::Internal(format!(
                "threshold key {key_id}: no record after the key generation committed"
            ))
        })?;
        Ok(NewKey {
            public,
            handle: record.handle,
        })
    }

    async fn sign(&self, key: &KeyRecord, claimed: &Claimed, message: &[u8]) -> Result<Vec<u8>> {
        Ok(ThresholdBackend::sign(self, key, claimed, message).await?)
    }

    async fn delete(&self, key: &KeyRecord) -> Result<()> {
        // Only this signer's share goes; the other signers keep theirs.
        self.forget(&key.key_id);
        Ok(())
    }

    fn records_high_water(&self) -> bool {
        true
    }
}
