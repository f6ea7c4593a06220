//! Share repair: a signer that lost its share of a threshold key gets it
//! back from k other holders (FROST's repairable threshold scheme), as
//! coordinator and as helper.

use super::*;

impl ThresholdBackend {
    /// Gets this signer's lost share of the threshold key `key_id` back
    /// from k other holders with FROST's repairable threshold scheme
    /// (`keys::repairable`) and stores it like a share made by DKG; returns
    /// the group public key, which does not change. The helpers are the
    /// first k peers (by identifier) that answer round 1; each sends its
    /// deltas straight to the other helpers, and only the sums (sigmas)
    /// come here. The share is stored only when it matches this signer's
    /// verifying share in the public key package the helpers agree on.
    pub async fn repair_share(self: &Arc<Self>, key_id: &str) -> Result<Vec<u8>, ThresholdError> {
        let held = self
            .store
            .key(key_id)
            .map_err(|e| ThresholdError::Internal(e.to_string()))?;
        if held.is_some() {
            return Err(ThresholdError::AlreadyHeld(key_id.to_owned()));
        }
        let me = self.config.self_id;
        let needed = usize::from(self.config.min_signers);
        let session_id = random_session_id();
        let unavailable = |reachable: usize, details: String| ThresholdError::Unavailable {
            operation: "share repair",
            needed,
            reachable,
            details,
        };
        let protocol =
            |what: String| ThresholdError::Protocol(format!("share repair of {key_id}: {what}; nothing was stored"));
        let peers: Vec<u16> = self.config.peers.iter().map(|p| p.id).collect();
        tracing::info!(%session_id, %key_id, "starting share repair");

        // Round 1: which holders answer, and the key's public material.
        let req = RepairRound1Request {
            session_id: session_id.clone(),
            coordinator: u32::from(me),
            key_id: key_id.to_owned(),
        };
        let started = Instant::now();
        let results = self
            .all(&peers, self.config.dkg_timeout, move |b, to| {
                let req = req.clone();
                async move { b.transport()?.repair_round1(to, req).await }
            })
            .await;
        self.dkg_round_done("repair_round1", started, &results);
        let (ok, failed) = split(results);
        if ok.len() < needed {
            return Err(unavailable(ok.len(), failed));
        }
        let chosen: Vec<(u16, RepairRound1Response)> = ok.into_iter().take(needed).collect();
        let helpers: Vec<u16> = chosen.iter().map(|(id, _)| *id).collect();
        let info = chosen[0].1.clone();
        if chosen.iter().any(|(_, r)| *r != info) {
            return Err(protocol(format!("helpers {helpers:?} disagree about the key")));
        }
        let public_package = PublicKeyPackage::deserialize(&info.public_package)
            .map_err(|e| protocol(format!("public key package: {e}")))?;
        let public = public_package
            .verifying_key()
            .serialize()
            .map_err(|e| protocol(format!("group key: {e}")))?;
        let mut holders = Vec::new();
        for p in &info.participants {
            holders.push(id16(*p).map_err(|e| protocol(e.to_string()))?);
        }
        holders.sort_unstable();
        let derived_id = seal_tuf::keys::key_id(Algorithm::Ed25519.key_type(), &public).to_string();
        if derived_id != key_id
            || holders != self.config.participants()
            || info.min_signers != u32::from(self.config.min_signers)
            || public_package.min_signers() != Some(self.config.min_signers)
        {
            return Err(protocol(format!(
                "the helpers hold key {derived_id} with signers {holders:?}, {} of them, \
                 which is not a key of this cluster",
                info.min_signers
            )));
        }
        let my_ident = identifier(me).map_err(as_internal)?;
        let expected = *public_package
            .verifying_shares()
            .get(&my_ident)
            .ok_or_else(|| protocol(format!("the public key package has no verifying share of signer {me}")))?;

        // Round 2: each helper sends its deltas directly to the other helpers.
        let req = RepairRound2Request {
            session_id: session_id.clone(),
            coordinator: u32::from(me),
            helpers: helpers.iter().map(|h| u32::from(*h)).collect(),
        };
        let started = Instant::now();
        let results = self
            .all(&helpers, self.config.dkg_timeout, move |b, to| {
                let req = req.clone();
                async move { b.transport()?.repair_round2(to, req).await }
            })
            .await;
        self.dkg_round_done("repair_round2", started, &results);
        let (ok, failed) = split(results);
        if !failed.is_empty() {
            return Err(unavailable(ok.len(), failed));
        }

        // Round 3: each helper's sigma; their sum is this signer's share.
        let req = RepairFinishRequest {
            session_id: session_id.clone(),
            coordinator: u32::from(me),
        };
        let started = Instant::now();
        let results = self
            .all(&helpers, self.config.dkg_timeout, move |b, to| {
                let req = req.clone();
                async move { b.transport()?.repair_finish(to, req).await }
            })
            .await;
        self.dkg_round_done("repair_finish", started, &results);
        let (ok, failed) = split(results);
        if !failed.is_empty() {
            return Err(unavailable(ok.len(), failed));
        }
        let mut sigmas = Vec::new();
        for (from, r) in &ok {
            sigmas.push(
                frost::keys::repairable::Sigma::deserialize(&r.sigma)
                    .map_err(|e| protocol(format!("sigma of signer {from}: {e}")))?,
            );
        }
        let key_package = frost::keys::repairable::repair_share_part3(&sigmas, my_ident, &public_package)
            .map_err(|e| protocol(format!("repair part 3: {e}")))?;
        if *key_package.verifying_share() != expected {
            return Err(protocol(format!(
                "the values of helpers {helpers:?} do not make this signer's share \
                 (it does not match its verifying share)"
            )));
        }

        let b = self.clone();
        let kid = key_id.to_owned();
        let key_package = Arc::new(key_package);
        blocking(move || {
            let record = b.share_record(&key_package, &public_package, info.gun, info.role, holders)?;
            if record.key_id != kid {
                return Err(ThresholdError::Failed("share repair changed the key ID".into()));
            }
            if b.store
                .key(&kid)
                .map_err(|e| ThresholdError::Failed(e.to_string()))?
                .is_some()
            {
                return Err(ThresholdError::AlreadyExists(format!("key {kid} was stored meanwhile")));
            }
            b.store
                .put_key(&record)
                .map_err(|e| failure("storing the repaired share")(e.to_string()))?;
            lock(&b.shares).insert(kid, key_package);
            Ok(())
        })
        .await
        .map_err(as_internal)?;
        tracing::info!(%session_id, %key_id, ?helpers, "share repair complete");
        Ok(public)
    }

    fn sweep_repairs(sessions: &mut HashMap<String, RepairSession>) {
        sessions.retain(|_, s| s.created.elapsed() < DKG_TTL);
    }

    /// Share repair round 1 on a helper: opens a session for the
    /// coordinator, the participant repaired, and answers with the key's
    /// record and public key package.
    pub async fn repair_round1(
        self: &Arc<Self>,
        req: RepairRound1Request,
    ) -> Result<RepairRound1Response, ThresholdError> {
        let participant = id16(req.coordinator)?;
        if req.session_id.is_empty() || req.session_id.len() > 64 {
            return Err(ThresholdError::InvalidArgument("bad repair session id".into()));
        }
        if participant == self.config.self_id {
            return Err(ThresholdError::InvalidArgument(
                "a signer does not help repair its own share".into(),
            ));
        }
        let b = self.clone();
        let key_id = req.key_id.clone();
        let (record, handle) = blocking(move || {
            let record = b.threshold_record(&key_id)?;
            // Only a helper that can use its own share takes part.
            b.key_package(&record)?;
            let handle = ThresholdHandle::decode(&record.handle)?;
            Ok((record, handle))
        })
        .await?;
        if !handle.participants.contains(&participant) {
            return Err(ThresholdError::InvalidArgument(format!(
                "signer {participant} holds no share of key {}",
                req.key_id
            )));
        }
        let public_package = base64::engine::general_purpose::STANDARD
            .decode(&handle.public_package)
            .map_err(|e| failure("public key package")(e.to_string()))?;
        let mut sessions = lock(&self.repairs);
        Self::sweep_repairs(&mut sessions);
        if sessions.len() >= MAX_DKG_SESSIONS {
            return Err(ThresholdError::Busy("too many repair sessions in progress".into()));
        }
        if sessions.contains_key(&req.session_id) {
            return Err(ThresholdError::AlreadyExists(format!(
                "repair session {} exists",
                req.session_id
            )));
        }
        sessions.insert(
            req.session_id,
            RepairSession {
                key_id: req.key_id,
                participant,
                holders: handle.participants.clone(),
                helpers: None,
                received: BTreeMap::new(),
                created: Instant::now(),
            },
        );
        tracing::info!(key_id = %record.key_id, participant, "helping repair a threshold key share");
        Ok(RepairRound1Response {
            gun: record.gun,
            role: record.role,
            min_signers: u32::from(handle.min_signers),
            participants: handle.participants.iter().map(|p| u32::from(*p)).collect(),
            public_package,
        })
    }

    /// Share repair round 2 on a helper: `repair_share_part1` over the
    /// helpers named, and direct delivery of each delta to its helper.
    pub async fn repair_round2(
        self: &Arc<Self>,
        req: RepairRound2Request,
    ) -> Result<RepairRound2Response, ThresholdError> {
        let me = self.config.self_id;
        let mut helpers = Vec::new();
        for h in &req.helpers {
            helpers.push(id16(*h)?);
        }
        helpers.sort_unstable();
        helpers.dedup();
        if helpers.len() != req.helpers.len() {
            return Err(ThresholdError::InvalidArgument("repair helpers are named twice".into()));
        }
        let (key_id, participant) = {
            let mut sessions = lock(&self.repairs);
            let s = sessions
                .get_mut(&req.session_id)
                .ok_or_else(|| ThresholdError::Missing(format!("no repair session {}", req.session_id)))?;
            if u32::from(s.participant) != req.coordinator {
                return Err(ThresholdError::PermissionDenied(
                    "the repair session belongs to another signer".into(),
                ));
            }
            if s.helpers.is_some() {
                return Err(ThresholdError::OutOfOrder("repair session is past round 1".into()));
            }
            if !helpers.contains(&me)
                || helpers.contains(&s.participant)
                || !helpers.iter().all(|h| s.holders.contains(h))
            {
                return Err(ThresholdError::InvalidArgument(format!(
                    "repair helpers {helpers:?} must be holders of the key, this signer among them, not signer {}",
                    s.participant
                )));
            }
            s.helpers = Some(helpers.clone());
            (s.key_id.clone(), s.participant)
        };
        let b = self.clone();
        let key_package = blocking(move || {
            let record = b.threshold_record(&key_id)?;
            b.key_package(&record)
        })
        .await?;
        let mut idents = Vec::new();
        for h in &helpers {
            idents.push(identifier(*h)?);
        }
        let deltas = frost::keys::repairable::repair_share_part1::<frost::Ed25519Sha512, _>(
            &idents,
            &key_package,
            &mut rand::rngs::OsRng,
            identifier(participant)?,
        )
        .map_err(|e| ThresholdError::InvalidArgument(format!("repair part 1: {e}")))?;
        let by_identifier: BTreeMap<Identifier, u16> =
            helpers.iter().copied().zip(idents).map(|(h, i)| (i, h)).collect();
        let mut deliveries = Vec::new();
        for (ident, delta) in deltas {
            let to = *by_identifier
                .get(&ident)
                .ok_or_else(|| ThresholdError::Failed("a delta for an unknown helper".into()))?;
            if to == me {
                let mut sessions = lock(&self.repairs);
                let s = sessions
                    .get_mut(&req.session_id)
                    .ok_or_else(|| ThresholdError::Missing(format!("repair session {} expired", req.session_id)))?;
                s.received.insert(me, delta);
            } else {
                deliveries.push((to, delta.serialize()));
            }
        }
        let session_id = req.session_id.clone();
        self.deliver_each(deliveries, move |b, to, delta| {
            let req = RepairDeliverRequest {
                session_id: session_id.clone(),
                from: u32::from(me),
                delta,
            };
            async move { b.transport()?.repair_deliver(to, req).await }
        })
        .await
        .map_err(|details| ThresholdError::DeliveryFailed {
            what: "repair delta",
            details,
        })?;
        Ok(RepairRound2Response {})
    }

    /// A delta from another helper of a share repair.
    pub async fn repair_deliver(
        self: &Arc<Self>,
        req: RepairDeliverRequest,
    ) -> Result<RepairDeliverResponse, ThresholdError> {
        let from = id16(req.from)?;
        let delta = frost::keys::repairable::Delta::deserialize(&req.delta)
            .map_err(|e| ThresholdError::InvalidArgument(format!("delta from signer {from}: {e}")))?;
        let mut sessions = lock(&self.repairs);
        let s = sessions
            .get_mut(&req.session_id)
            .ok_or_else(|| ThresholdError::Missing(format!("no repair session {}", req.session_id)))?;
        let not_helper = s.helpers.as_ref().is_some_and(|h| !h.contains(&from));
        if from == self.config.self_id || from == s.participant || !s.holders.contains(&from) || not_helper {
            return Err(ThresholdError::PermissionDenied(format!(
                "signer {from} is not a helper of this repair"
            )));
        }
        if s.received.contains_key(&from) {
            return Err(ThresholdError::AlreadyExists(format!(
                "delta from signer {from} already received"
            )));
        }
        s.received.insert(from, delta);
        Ok(RepairDeliverResponse {})
    }

    /// Share repair round 3 on a helper: the sum of every helper's delta
    /// for this one (`repair_share_part2`), for the participant repaired.
    pub async fn repair_finish(
        self: &Arc<Self>,
        req: RepairFinishRequest,
    ) -> Result<RepairFinishResponse, ThresholdError> {
        let session = {
            let mut sessions = lock(&self.repairs);
            match sessions.get(&req.session_id) {
                None => return Err(ThresholdError::Missing(format!("no repair session {}", req.session_id))),
                Some(s) if u32::from(s.participant) != req.coordinator => {
                    return Err(ThresholdError::PermissionDenied(
                        "the repair session belongs to another signer".into(),
                    ))
                }
                Some(_) => {}
            }
            sessions
                .remove(&req.session_id)
                .ok_or_else(|| ThresholdError::Failed("repair session vanished".into()))?
        };
        let helpers = session
            .helpers
            .ok_or_else(|| ThresholdError::OutOfOrder("repair session is not past round 2".into()))?;
        let from: Vec<u16> = session.received.keys().copied().collect();
        if from != helpers {
            return Err(ThresholdError::OutOfOrder(format!(
                "deltas arrived from signers {from:?}, the helpers are {helpers:?}"
            )));
        }
        let deltas: Vec<_> = session.received.into_values().collect();
        let sigma = frost::keys::repairable::repair_share_part2(&deltas);
        tracing::info!(key_id = %session.key_id, participant = session.participant, "sent a share repair value");
        Ok(RepairFinishResponse {
            sigma: sigma.serialize(),
        })
    }
}
