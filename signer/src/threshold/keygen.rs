//! Key generation and share refresh: FROST's distributed key generation,
//! as coordinator (every signer takes part) and as participant.

use super::*;

impl ThresholdBackend {
    // ---------------------------------------------------------------- coordinator: DKG

    /// Runs a DKG with every signer for a key of `gun`/`role`; returns the
    /// key ID and the group public key (32 bytes).
    pub async fn create_key(
        self: &Arc<Self>,
        algorithm: Algorithm,
        gun: &str,
        role: &str,
    ) -> Result<(String, Vec<u8>), ThresholdError> {
        if algorithm != Algorithm::Ed25519 {
            return Err(ThresholdError::Unsupported(algorithm.as_str()));
        }
        let (session_id, finished) = self.dkg_rounds("key generation (DKG)", gun, role, "").await?;
        let mut keys: BTreeSet<(String, Vec<u8>)> = BTreeSet::new();
        for (_, r) in finished {
            keys.insert((r.key_id, r.group_public_key));
        }
        if keys.len() != 1 {
            return Err(ThresholdError::Protocol(format!(
                "signers derived {} different group keys in DKG session {session_id}",
                keys.len()
            )));
        }
        let (key_id, public) = keys.into_iter().next().unwrap_or_default();
        tracing::info!(%session_id, %key_id, gun, role, "DKG complete");
        Ok((key_id, public))
    }

    /// Replaces every signer's share of the threshold key `key_id` by a new
    /// one (FROST's refresh DKG with all n signers: shares of zero added to
    /// the old shares), keeping the group key; returns it. The new shares are
    /// stored only once every signer derived the same new public key
    /// package; old and new shares do not sign together.
    pub async fn refresh_shares(self: &Arc<Self>, key_id: &str) -> Result<Vec<u8>, ThresholdError> {
        let record = self
            .threshold_record(key_id)
            .map_err(|e| ThresholdError::NotFound(e.to_string()))?;
        let (session_id, finished) = self
            .dkg_rounds("share refresh", &record.gun, &record.role, key_id)
            .await?;
        let packages: BTreeSet<(&str, &[u8], &[u8])> = finished
            .iter()
            .map(|(_, r)| {
                (
                    r.key_id.as_str(),
                    r.group_public_key.as_slice(),
                    r.new_public_package.as_slice(),
                )
            })
            .collect();
        let agreed = packages.len() == 1
            && packages
                .iter()
                .all(|(k, public, _)| *k == key_id && *public == record.public.as_slice());
        if !agreed {
            return Err(ThresholdError::Protocol(format!(
                "signers derived {} different results in share refresh {session_id}; nothing was replaced",
                packages.len()
            )));
        }
        let req = DkgCommitRequest {
            session_id: session_id.clone(),
            coordinator: u32::from(self.config.self_id),
        };
        let started = Instant::now();
        let results = on_each!(
            self,
            &self.config.participants(),
            self.config.dkg_timeout,
            dkg_commit,
            req
        );
        self.dkg_round_done("dkg_commit", started, &results);
        let (ok, failed) = split(results);
        if !failed.is_empty() {
            let done: Vec<u16> = ok.iter().map(|(id, _)| *id).collect();
            return Err(ThresholdError::Protocol(format!(
                "share refresh {session_id} of {key_id} stored on signers {done:?} only ({failed}); \
                 those that did not store it hold shares that no longer sign with the others"
            )));
        }
        tracing::info!(%session_id, %key_id, "share refresh complete");
        Ok(record.public)
    }

    /// The three DKG rounds with every signer, for a new key of
    /// `gun`/`role` or, when `refresh_key_id` is not empty, a share refresh
    /// of that key; returns the session and every signer's `DkgFinish`.
    async fn dkg_rounds(
        self: &Arc<Self>,
        operation: &'static str,
        gun: &str,
        role: &str,
        refresh_key_id: &str,
    ) -> Result<(String, Vec<(u16, DkgFinishResponse)>), ThresholdError> {
        let participants = self.config.participants();
        let n = participants.len();
        let session_id = random_session_id();
        let me = self.config.self_id;
        let unavailable = |reachable: usize, details: String| ThresholdError::Unavailable {
            operation,
            needed: n,
            reachable,
            details,
        };
        tracing::info!(%session_id, operation, gun, role, refresh_key_id, k = self.config.min_signers, n, "starting DKG");

        // Round 1: everyone's public package.
        let req = DkgRound1Request {
            session_id: session_id.clone(),
            coordinator: u32::from(me),
            gun: gun.to_owned(),
            role: role.to_owned(),
            min_signers: u32::from(self.config.min_signers),
            participants: participants.iter().map(|p| u32::from(*p)).collect(),
            refresh_key_id: refresh_key_id.to_owned(),
        };
        let started = Instant::now();
        // Round 1 is cheap (a polynomial and its commitments): a participant
        // that does not answer within the peer timeout is down or hung, and
        // the DKG fails now rather than after the whole DKG timeout. The
        // later rounds (share encryption under PBES2) keep the DKG timeout.
        let results = on_each!(self, &participants, self.config.peer_timeout, dkg_round1, req);
        self.dkg_round_done("dkg_round1", started, &results);
        let (ok, failed) = split(results);
        if !failed.is_empty() {
            return Err(unavailable(ok.len(), failed));
        }
        let round1_packages: HashMap<u32, Vec<u8>> = ok.into_iter().map(|(id, r)| (u32::from(id), r.package)).collect();

        // Round 2: each participant sends its secret packages directly to their recipients.
        let req = DkgRound2Request {
            session_id: session_id.clone(),
            coordinator: u32::from(me),
            round1_packages,
        };
        let started = Instant::now();
        let results = on_each!(self, &participants, self.config.dkg_timeout, dkg_round2, req);
        self.dkg_round_done("dkg_round2", started, &results);
        let (ok, failed) = split(results);
        if !failed.is_empty() {
            return Err(unavailable(ok.len(), failed));
        }

        // Round 3: everyone derives (and, for a new key, stores) its share.
        let req = DkgFinishRequest {
            session_id: session_id.clone(),
            coordinator: u32::from(me),
        };
        let started = Instant::now();
        let results = on_each!(self, &participants, self.config.dkg_timeout, dkg_finish, req);
        self.dkg_round_done("dkg_finish", started, &results);
        let (ok, failed) = split(results);
        if !failed.is_empty() {
            return Err(unavailable(ok.len(), failed));
        }
        Ok((session_id, ok))
    }

    // ---------------------------------------------------------------- participant

    fn sweep_dkg(sessions: &mut HashMap<String, DkgSession>) {
        sessions.retain(|_, s| s.created.elapsed() < DKG_TTL);
    }

    /// DKG round 1 on this participant.
    pub async fn dkg_round1(self: &Arc<Self>, req: DkgRound1Request) -> Result<DkgRound1Response, ThresholdError> {
        let mut participants = Vec::new();
        for p in &req.participants {
            participants.push(id16(*p)?);
        }
        participants.sort_unstable();
        participants.dedup();
        if participants != self.config.participants() {
            return Err(ThresholdError::InvalidArgument(format!(
                "DKG participants {participants:?} differ from this signer's cluster {:?}",
                self.config.participants()
            )));
        }
        if req.min_signers != u32::from(self.config.min_signers) {
            return Err(ThresholdError::InvalidArgument(format!(
                "DKG threshold {} differs from this signer's {}",
                req.min_signers, self.config.min_signers
            )));
        }
        if req.gun.is_empty() || req.role.is_empty() || req.session_id.is_empty() || req.session_id.len() > 64 {
            return Err(ThresholdError::InvalidArgument(
                "a DKG session needs an id, a gun and a role".into(),
            ));
        }
        let me = identifier(self.config.self_id)?;
        let refresh = nonempty(&req.refresh_key_id);
        let (secret, package) = match &refresh {
            None => frost::keys::dkg::part1(
                me,
                self.config.max_signers(),
                self.config.min_signers,
                rand::rngs::OsRng,
            ),
            Some(key_id) => {
                // Only a key this signer holds, for the stated GUN and role, made by this cluster.
                let record = self.threshold_record(key_id)?;
                let handle = ThresholdHandle::decode(&record.handle)?;
                let mut holders = handle.participants.clone();
                holders.sort_unstable();
                if (record.gun.as_str(), record.role.as_str()) != (req.gun.as_str(), req.role.as_str())
                    || holders != participants
                    || handle.min_signers != self.config.min_signers
                {
                    return Err(ThresholdError::InvalidArgument(format!(
                        "share refresh of {key_id}: the key belongs to {}/{} with signers {holders:?}, {} of them",
                        record.gun, record.role, handle.min_signers
                    )));
                }
                frost::keys::refresh::refresh_dkg_part1(
                    me,
                    self.config.max_signers(),
                    self.config.min_signers,
                    rand::rngs::OsRng,
                )
            }
        }
        .map_err(|e| failure("DKG part 1")(e.to_string()))?;
        let package = package.serialize().map_err(|e| failure("DKG part 1")(e.to_string()))?;
        let mut sessions = lock(&self.dkg);
        Self::sweep_dkg(&mut sessions);
        if sessions.len() >= MAX_DKG_SESSIONS {
            return Err(ThresholdError::Busy("too many DKG sessions in progress".into()));
        }
        if sessions.contains_key(&req.session_id) {
            return Err(ThresholdError::AlreadyExists(format!(
                "DKG session {} exists",
                req.session_id
            )));
        }
        sessions.insert(
            req.session_id.clone(),
            DkgSession {
                gun: req.gun,
                role: req.role,
                refresh,
                participants,
                state: DkgState::Round1(secret, package.clone()),
                received: BTreeMap::new(),
                created: Instant::now(),
            },
        );
        Ok(DkgRound1Response { package })
    }

    /// DKG round 2 on this participant: part 2, then direct delivery of each
    /// secret package to its recipient.
    pub async fn dkg_round2(self: &Arc<Self>, req: DkgRound2Request) -> Result<DkgRound2Response, ThresholdError> {
        let me = self.config.self_id;
        let (secret, own, participants, refresh) = {
            let mut sessions = lock(&self.dkg);
            let s = sessions
                .get_mut(&req.session_id)
                .ok_or_else(|| ThresholdError::Missing(format!("no DKG session {}", req.session_id)))?;
            match std::mem::replace(&mut s.state, DkgState::Busy) {
                DkgState::Round1(secret, own) => (secret, own, s.participants.clone(), s.refresh.is_some()),
                other => {
                    s.state = other;
                    return Err(ThresholdError::OutOfOrder("DKG session is not in round 1".into()));
                }
            }
        };
        let mut others = BTreeMap::new();
        for p in &participants {
            let bytes = req
                .round1_packages
                .get(&u32::from(*p))
                .ok_or_else(|| ThresholdError::InvalidArgument(format!("round-1 package of signer {p} missing")))?;
            if *p == me {
                if *bytes != own {
                    return Err(ThresholdError::InvalidArgument(
                        "the coordinator relayed a different round-1 package of ours".into(),
                    ));
                }
                continue;
            }
            let pkg = frost::keys::dkg::round1::Package::deserialize(bytes)
                .map_err(|e| ThresholdError::InvalidArgument(format!("round-1 package of signer {p}: {e}")))?;
            others.insert(identifier(*p)?, pkg);
        }
        let part2 = if refresh {
            frost::keys::refresh::refresh_dkg_part2(secret, &others)
        } else {
            frost::keys::dkg::part2(secret, &others)
        };
        let (secret2, outgoing) = part2
            .map_err(|e| ThresholdError::InvalidArgument(format!("DKG part 2 (culprits {:?}): {e}", e.culprits())))?;
        {
            let mut sessions = lock(&self.dkg);
            let s = sessions
                .get_mut(&req.session_id)
                .ok_or_else(|| ThresholdError::Missing(format!("DKG session {} expired", req.session_id)))?;
            s.state = DkgState::Round2(secret2, others);
        }
        let by_identifier: BTreeMap<Identifier, u16> = participants
            .iter()
            .filter_map(|p| Identifier::try_from(*p).ok().map(|i| (i, *p)))
            .collect();
        let mut deliveries = Vec::new();
        for (to_ident, package) in outgoing {
            let to = *by_identifier
                .get(&to_ident)
                .ok_or_else(|| ThresholdError::Failed("round-2 package for an unknown participant".into()))?;
            let bytes = package
                .serialize()
                .map_err(|e| failure("round-2 package")(e.to_string()))?;
            deliveries.push((to, bytes));
        }
        let session_id = req.session_id.clone();
        self.deliver_each(deliveries, move |b, to, package| {
            let req = DkgDeliverRequest {
                session_id: session_id.clone(),
                from: u32::from(me),
                package,
            };
            async move { b.transport()?.dkg_deliver(to, req).await }
        })
        .await
        .map_err(|details| ThresholdError::DeliveryFailed {
            what: "round-2",
            details,
        })?;
        Ok(DkgRound2Response {})
    }

    /// A round-2 package from another participant.
    pub async fn dkg_deliver(self: &Arc<Self>, req: DkgDeliverRequest) -> Result<DkgDeliverResponse, ThresholdError> {
        let from = id16(req.from)?;
        let package = frost::keys::dkg::round2::Package::deserialize(&req.package)
            .map_err(|e| ThresholdError::InvalidArgument(format!("round-2 package from signer {from}: {e}")))?;
        let mut sessions = lock(&self.dkg);
        let s = sessions
            .get_mut(&req.session_id)
            .ok_or_else(|| ThresholdError::Missing(format!("no DKG session {}", req.session_id)))?;
        if from == self.config.self_id || !s.participants.contains(&from) {
            return Err(ThresholdError::PermissionDenied(format!(
                "signer {from} is not a participant of this DKG"
            )));
        }
        let ident = identifier(from)?;
        if s.received.contains_key(&ident) {
            return Err(ThresholdError::AlreadyExists(format!(
                "round-2 package from signer {from} already received"
            )));
        }
        s.received.insert(ident, package);
        Ok(DkgDeliverResponse {})
    }

    /// DKG round 3 on this participant: derive, encrypt and store the share.
    pub async fn dkg_finish(self: &Arc<Self>, req: DkgFinishRequest) -> Result<DkgFinishResponse, ThresholdError> {
        let session = lock(&self.dkg)
            .remove(&req.session_id)
            .ok_or_else(|| ThresholdError::Missing(format!("no DKG session {}", req.session_id)))?;
        let DkgState::Round2(secret2, round1) = &session.state else {
            return Err(ThresholdError::OutOfOrder("DKG session is not in round 2".into()));
        };
        let old = match &session.refresh {
            Some(key_id) => {
                let record = self.threshold_record(key_id)?;
                let handle = ThresholdHandle::decode(&record.handle)?;
                let public = handle.public_package()?;
                Some((public, self.key_package(&record)?))
            }
            None => None,
        };
        let derived = match old {
            None => frost::keys::dkg::part3(secret2, round1, &session.received),
            Some((old_public, old_share)) => frost::keys::refresh::refresh_dkg_shares(
                secret2,
                round1,
                &session.received,
                old_public,
                (*old_share).clone(),
            ),
        };
        let (key_package, public_package) = derived
            .map_err(|e| ThresholdError::InvalidArgument(format!("DKG part 3 (culprits {:?}): {e}", e.culprits())))?;
        let public = public_package
            .verifying_key()
            .serialize()
            .map_err(|e| failure("group key")(e.to_string()))?;
        let key_id = seal_tuf::keys::key_id(Algorithm::Ed25519.key_type(), &public).to_string();
        if session.refresh.as_ref().is_some_and(|k| *k != key_id) {
            return Err(ThresholdError::Failed("share refresh changed the group key".into()));
        }
        let public_bytes = public_package
            .serialize()
            .map_err(|e| failure("public key package")(e.to_string()))?;
        let me = self.clone();
        let gun = session.gun.clone();
        let role = session.role.clone();
        let participants = session.participants.clone();
        let kid = key_id.clone();
        let refresh = session.refresh.is_some();
        let key_package = Arc::new(key_package);
        let record = blocking(move || {
            let record = me.share_record(&key_package, &public_package, gun, role, participants)?;
            if refresh {
                // Stored on DkgCommit, once every signer has its new share.
                return Ok(Some((record, key_package)));
            }
            me.store
                .put_key(&record)
                .map_err(|e| failure("storing the share")(e.to_string()))?;
            lock(&me.shares).insert(kid, key_package);
            Ok(None)
        })
        .await?;
        let mut new_public_package = Vec::new();
        if let Some((record, key_package)) = record {
            tracing::info!(%key_id, "prepared a refreshed threshold key share");
            new_public_package = public_bytes;
            let mut sessions = lock(&self.dkg);
            let mut session = session;
            session.state = DkgState::Prepared(Box::new(record), key_package);
            sessions.insert(req.session_id, session);
        } else {
            tracing::info!(%key_id, gun = %session.gun, role = %session.role, "stored threshold key share");
        }
        Ok(DkgFinishResponse {
            group_public_key: public,
            key_id,
            new_public_package,
        })
    }

    /// This signer's key record of a threshold key: `key_package` encrypted
    /// under the default alias (JWE, as software keys are), with the public
    /// key package, k and every holder's identifier in the handle.
    pub(super) fn share_record(
        &self,
        key_package: &KeyPackage,
        public_package: &PublicKeyPackage,
        gun: String,
        role: String,
        participants: Vec<u16>,
    ) -> Result<KeyRecord, ThresholdError> {
        let public = public_package
            .verifying_key()
            .serialize()
            .map_err(|e| failure("group key")(e.to_string()))?;
        let key_id = seal_tuf::keys::key_id(Algorithm::Ed25519.key_type(), &public).to_string();
        let public_bytes = public_package
            .serialize()
            .map_err(|e| failure("public key package")(e.to_string()))?;
        let serialized =
            Zeroizing::new(KeyPackage::serialize(key_package).map_err(|e| failure("key package")(e.to_string()))?);
        let alias = self.passphrases.default_alias();
        let passphrase = self
            .passphrases
            .get(alias)
            .ok_or_else(|| ThresholdError::Locked(format!("no passphrase for alias {alias:?}")))?;
        let share_jwe = encrypt_secret(passphrase.as_bytes(), &serialized, alias, self.iterations)
            .map_err(|e| failure("encrypting the share")(e.to_string()))?;
        let handle = ThresholdHandle {
            share_jwe,
            public_package: base64::engine::general_purpose::STANDARD.encode(&public_bytes),
            self_id: self.config.self_id,
            min_signers: *key_package.min_signers(),
            participants,
        };
        Ok(KeyRecord {
            key_id,
            gun,
            role,
            algorithm: Algorithm::Ed25519.as_str().to_owned(),
            public,
            backend: BACKEND_NAME.to_owned(),
            handle: serde_json::to_vec(&handle).map_err(|e| failure("key handle")(e.to_string()))?,
        })
    }

    /// The last step of a share refresh on this participant: store the new
    /// share prepared by `DkgFinish` in place of the old one.
    pub async fn dkg_commit(self: &Arc<Self>, req: DkgCommitRequest) -> Result<DkgCommitResponse, ThresholdError> {
        let session = lock(&self.dkg)
            .remove(&req.session_id)
            .ok_or_else(|| ThresholdError::Missing(format!("no DKG session {}", req.session_id)))?;
        let DkgState::Prepared(record, key_package) = session.state else {
            return Err(ThresholdError::OutOfOrder(
                "DKG session has no prepared share refresh".into(),
            ));
        };
        let me = self.clone();
        let key_id = record.key_id.clone();
        blocking(move || {
            me.store
                .put_key(&record)
                .map_err(|e| failure("storing the refreshed share")(e.to_string()))?;
            lock(&me.shares).insert(record.key_id.clone(), key_package);
            Ok(())
        })
        .await?;
        tracing::info!(%key_id, "stored a refreshed threshold key share");
        Ok(DkgCommitResponse {})
    }
}
