//! Signing rounds: the coordinator's two FROST rounds over k signers, and
//! the participant's commitments and policy-checked signature share.

use super::*;

impl ThresholdBackend {
    // ---------------------------------------------------------------- coordinator: signing

    /// Signs `content` with the threshold key `record`, coordinating k
    /// signers; returns the 64-byte Ed25519 signature, verified.
    pub async fn sign(
        self: &Arc<Self>,
        record: &KeyRecord,
        claimed: &Claimed,
        content: &[u8],
    ) -> Result<Vec<u8>, ThresholdError> {
        let handle = ThresholdHandle::decode(&record.handle)?;
        let public_package = handle.public_package()?;
        let group_key: [u8; 32] = record
            .public
            .as_slice()
            .try_into()
            .map_err(|_| ThresholdError::Internal(format!("key {}: public key is not 32 bytes", record.key_id)))?;
        let group_key = ed25519_dalek::VerifyingKey::from_bytes(&group_key)
            .map_err(|e| ThresholdError::Internal(format!("key {}: {e}", record.key_id)))?;
        let needed = usize::from(handle.min_signers);
        let me = self.config.self_id;
        let by_identifier: BTreeMap<Identifier, u16> = handle
            .participants
            .iter()
            .filter_map(|p| Identifier::try_from(*p).ok().map(|i| (i, *p)))
            .collect();
        let mut excluded: BTreeSet<u16> = BTreeSet::new();
        let mut last_error = None;
        for attempt in 0..MAX_SIGN_ATTEMPTS {
            let session_id = random_session_id();
            // Round 1: our own commitments first, then the first k-1 peers that answer.
            let commit = SignCommitRequest {
                session_id: session_id.clone(),
                coordinator: u32::from(me),
                key_id: record.key_id.clone(),
            };
            let round_started = Instant::now();
            let own = self
                .sign_commit(commit.clone())
                .await
                .map_err(|e| ThresholdError::Internal(format!("own commitments: {e}")))?;
            let mut commitments = BTreeMap::new();
            commitments.insert(
                identifier(me).map_err(as_internal)?,
                decode_commitments(&own.commitments)?,
            );
            let mut chosen = vec![me];
            let mut failures = Vec::new();
            let candidates: Vec<u16> = handle
                .participants
                .iter()
                .copied()
                .filter(|p| *p != me && !excluded.contains(p))
                .collect();
            let mut set = tokio::task::JoinSet::new();
            for to in candidates {
                let (b, req, timeout) = (self.clone(), commit.clone(), self.config.peer_timeout);
                set.spawn(async move {
                    let r = match b.transport() {
                        Ok(t) => with_timeout(to, timeout, t.sign_commit(to, req)).await,
                        Err(e) => Err(e),
                    };
                    (to, r)
                });
            }
            while chosen.len() < needed {
                let Some(joined) = set.join_next().await else { break };
                let Ok((to, r)) = joined else { continue };
                match r.and_then(|r| {
                    decode_commitments(&r.commitments).map_err(|e| ThresholdError::InvalidArgument(e.to_string()))
                }) {
                    Ok(c) => {
                        commitments.insert(identifier(to).map_err(as_internal)?, c);
                        chosen.push(to);
                    }
                    Err(e) => {
                        self.note_unanswered(to, &e);
                        tracing::warn!(peer = to, code = %e.kind(), message = %e, "peer skipped in signing round 1");
                        failures.push(format!("signer {to}: {e}"));
                    }
                }
            }
            // Slower peers are not waited for; their nonces expire unused.
            // Their calls run to their end (each bounded by the peer
            // timeout) rather than being cancelled: every cancelled call
            // resets an HTTP/2 stream, and h2 closes a connection that
            // resets too many.
            set.detach_all();
            if chosen.len() < needed {
                self.metrics
                    .round("sign_commit", "unavailable", round_started.elapsed());
                let excluded_note = if excluded.is_empty() {
                    String::new()
                } else {
                    format!("; left out after failing earlier: {excluded:?}")
                };
                return Err(ThresholdError::Unavailable {
                    operation: "threshold signing",
                    needed,
                    reachable: chosen.len(),
                    details: format!("{}{excluded_note}", failures.join("; ")),
                });
            }

            self.metrics.round("sign_commit", "ok", round_started.elapsed());

            // Round 2: the signing package, with the message, to the k chosen.
            let package = frost::SigningPackage::new(commitments, content);
            let package_bytes = package
                .serialize()
                .map_err(|e| ThresholdError::Internal(format!("signing package: {e}")))?;
            let share_req = SignShareRequest {
                session_id: session_id.clone(),
                coordinator: u32::from(me),
                key_id: record.key_id.clone(),
                signing_package: package_bytes,
                claimed_gun: claimed.gun.clone().unwrap_or_default(),
                claimed_role: claimed.role.clone().unwrap_or_default(),
                named: claimed.named.clone().into_iter().collect(),
            };
            let round_started = Instant::now();
            let results = on_each!(self, &chosen, self.config.peer_timeout, sign_share, share_req);
            let mut shares = BTreeMap::new();
            let mut retry = false;
            for (from, r) in results {
                match r {
                    Ok(r) => match frost::round2::SignatureShare::deserialize(&r.share) {
                        Ok(s) => {
                            shares.insert(identifier(from).map_err(as_internal)?, s);
                        }
                        Err(e) => {
                            tracing::warn!(peer = from, %e, "peer sent a malformed signature share");
                            excluded.insert(from);
                            retry = true;
                        }
                    },
                    // This signer's policy refused, or a peer's did.
                    Err(e @ (ThresholdError::Policy(_) | ThresholdError::Refused { .. })) => {
                        self.metrics.participant_refused(from);
                        self.metrics.round("sign_share", "refused", round_started.elapsed());
                        let high_water = e.high_water();
                        let message = match e {
                            ThresholdError::Refused { message, .. } => message,
                            policy => policy.to_string(),
                        };
                        return Err(ThresholdError::Refused {
                            signer: from,
                            message,
                            high_water,
                        });
                    }
                    Err(e) => {
                        self.note_unanswered(from, &e);
                        tracing::warn!(peer = from, code = %e.kind(), message = %e, "peer failed in signing round 2");
                        if from == me {
                            return Err(ThresholdError::Internal(format!("own signature share: {e}")));
                        }
                        failures.push(format!("signer {from}: {e}"));
                        excluded.insert(from);
                        retry = true;
                    }
                }
            }
            if retry {
                self.metrics
                    .round("sign_share", "participant_failed", round_started.elapsed());
                last_error = Some(ThresholdError::Unavailable {
                    operation: "threshold signing",
                    needed,
                    reachable: shares.len(),
                    details: failures.join("; "),
                });
                tracing::info!(
                    attempt,
                    ?excluded,
                    "retrying threshold signing without the failed signers"
                );
                continue;
            }
            let signature = match frost::aggregate_custom(
                &package,
                &shares,
                &public_package,
                frost::CheaterDetection::AllCheaters,
            ) {
                Ok(s) => s,
                Err(e) => {
                    let culprits: Vec<u16> = e
                        .culprits()
                        .iter()
                        .filter_map(|c| by_identifier.get(c).copied())
                        .collect();
                    if culprits.is_empty() {
                        self.metrics.round("sign_share", "failed", round_started.elapsed());
                        return Err(ThresholdError::Protocol(format!("aggregation failed: {e}")));
                    }
                    self.metrics
                        .round("sign_share", "invalid_share", round_started.elapsed());
                    for c in &culprits {
                        tracing::error!(signer = c, key_id = %record.key_id, %session_id, "signer sent an invalid signature share");
                    }
                    excluded.extend(culprits.iter().copied());
                    last_error = Some(ThresholdError::Protocol(format!(
                        "signers {culprits:?} sent invalid signature shares"
                    )));
                    continue;
                }
            };
            let bytes = signature
                .serialize()
                .map_err(|e| ThresholdError::Internal(format!("signature: {e}")))?;
            let sig = ed25519_dalek::Signature::from_slice(&bytes)
                .map_err(|e| ThresholdError::Protocol(format!("aggregate signature: {e}")))?;
            if let Err(e) = group_key.verify_strict(content, &sig) {
                self.metrics.round("sign_share", "failed", round_started.elapsed());
                return Err(ThresholdError::Protocol(format!(
                    "aggregate signature does not verify: {e}"
                )));
            }
            self.metrics.round("sign_share", "ok", round_started.elapsed());
            tracing::debug!(key_id = %record.key_id, signers = ?chosen, "threshold signature made");
            return Ok(bytes);
        }
        Err(last_error.unwrap_or_else(|| ThresholdError::Protocol("threshold signing failed".into())))
    }

    /// Signing round 1 on this participant: fresh nonces, kept in memory.
    pub async fn sign_commit(self: &Arc<Self>, req: SignCommitRequest) -> Result<SignCommitResponse, ThresholdError> {
        if req.session_id.is_empty() || req.session_id.len() > 64 {
            return Err(ThresholdError::InvalidArgument("bad signing session id".into()));
        }
        let me = self.clone();
        let key_id = req.key_id.clone();
        let package = blocking(move || {
            let record = me.threshold_record(&key_id)?;
            me.key_package(&record)
        })
        .await?;
        let (nonces, commitments) = frost::round1::commit(package.signing_share(), &mut rand::rngs::OsRng);
        let bytes = commitments
            .serialize()
            .map_err(|e| failure("commitments")(e.to_string()))?;
        let mut map = lock(&self.nonces);
        map.retain(|_, e| e.created.elapsed() < NONCE_TTL);
        if map.len() >= self.max_nonce_sessions {
            // The oldest session is most likely one this participant was
            // not chosen for; dropping its nonces is safe (never reused).
            if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.created).map(|(id, _)| id.clone()) {
                tracing::debug!(session = %oldest, "dropping the oldest signing session's nonces");
                map.remove(&oldest);
            }
        }
        if map.contains_key(&req.session_id) {
            return Err(ThresholdError::AlreadyExists("signing session exists".into()));
        }
        map.insert(
            req.session_id,
            NonceEntry {
                key_id: req.key_id,
                nonces,
                commitments,
                created: Instant::now(),
            },
        );
        Ok(SignCommitResponse { commitments: bytes })
    }

    /// Signing round 2 on this participant: consume the session's nonces,
    /// apply the policy to the message, record the high-water mark, answer
    /// with a share.
    pub async fn sign_share(self: &Arc<Self>, req: SignShareRequest) -> Result<SignShareResponse, ThresholdError> {
        // Taken out first: whatever happens next, these nonces are never used again.
        let entry = lock(&self.nonces)
            .remove(&req.session_id)
            .filter(|e| e.created.elapsed() < NONCE_TTL)
            .ok_or_else(|| ThresholdError::SessionGone(format!("no live signing session {}", req.session_id)))?;
        if entry.key_id != req.key_id {
            return Err(ThresholdError::InvalidArgument(
                "signing session was opened for another key".into(),
            ));
        }
        let package = frost::SigningPackage::deserialize(&req.signing_package)
            .map_err(|e| ThresholdError::InvalidArgument(format!("signing package: {e}")))?;
        let me_ident = identifier(self.config.self_id)?;
        if package.signing_commitments().get(&me_ident) != Some(&entry.commitments) {
            return Err(ThresholdError::InvalidArgument(
                "the signing package does not carry our commitments".into(),
            ));
        }
        let me = self.clone();
        let share = blocking(move || {
            let record = me.threshold_record(&req.key_id)?;
            let key_package = me.key_package(&record)?;
            let claimed = Claimed {
                gun: nonempty(&req.claimed_gun),
                role: nonempty(&req.claimed_role),
                named: req.named.clone().into_iter().collect(),
            };
            let scope = KeyScope {
                gun: record.gun.clone(),
                role: record.role.clone(),
            };
            let _guard = lock(&me.participant);
            let last = me
                .store
                .high_water(&record.key_id)
                .map_err(|e| ThresholdError::Failed(e.to_string()))?;
            let now = time::OffsetDateTime::now_utc();
            let approved = policy::decide(&scope, &claimed, package.message(), last.as_ref(), now, &me.policy)
                .map_err(|refusal| {
                    me.metrics.refused(refusal.reason());
                    tracing::warn!(key_id = %record.key_id, coordinator = req.coordinator, %refusal, "refused a threshold signature share");
                    ThresholdError::Policy(refusal)
                })?;
            let share = frost::round2::sign(&package, &entry.nonces, &key_package)
                .map_err(|e| ThresholdError::InvalidArgument(format!("signature share: {e}")))?;
            // Durable before the share leaves.
            let mark = match approved {
                Some(approved) => {
                    me.store
                        .set_high_water(&record.key_id, &approved.high_water)
                        .map_err(|e| ThresholdError::Failed(e.to_string()))?;
                    Some((record.key_id.clone(), approved.high_water))
                }
                None => None,
            };
            Ok((share.serialize(), mark))
        })
        .await?;
        let (share, mark) = share;
        if let Some((key_id, hw)) = mark {
            self.announce_mark(&key_id, &hw);
        }
        Ok(SignShareResponse { share })
    }
}
