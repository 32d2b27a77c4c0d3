//! One object's import: claim it, open its pinned content (checked first where its integrity
//! cannot be checked while it is converted), run it, and finish on the claim; or say why not.

use tokio::time::Instant;

use super::finish::Attempt;
use super::run::Input;
use super::*;
use crate::claims::{ClaimOutcome, ClaimStore};
use crate::decode::{verify, Verified};
use crate::source::{Content, ObjectSource, SourceError};

impl<A: Adapters> Pipeline<A> {
    /// Imports one object, or as much of it as fits before `deadline`; the DynamoDB units its
    /// requests consume are counted for its report.
    pub async fn import(&self, obj: &ObjectRef, deadline: Instant, owner: &str) -> ObjectOutcome {
        crate::store::metered(self.import_metered(obj, deadline, owner)).await
    }

    async fn import_metered(
        &self,
        obj: &ObjectRef,
        deadline: Instant,
        owner: &str,
    ) -> ObjectOutcome {
        if let Some(why) = self.ignores(&obj.bucket, &obj.key, obj.size, None) {
            return ObjectOutcome::Ignored(why);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if self.too_late(deadline) {
            return ObjectOutcome::Retry(RetryReason::TooLate(None));
        }
        // Nothing is claimed before the converter is known good: a broken converter leaves
        // every object untouched, and its notice comes back until the file is fixed.
        let (config_version, converter) = match self.load_converter().await {
            Ok(config) => config,
            Err(ConfigProblem::Transient(why)) => {
                return ObjectOutcome::Retry(RetryReason::Other(why))
            }
            Err(ConfigProblem::Unusable(why)) => {
                tracing::error!(converter = %self.settings.converter, error = %why, "converter unusable: objects wait for a fix");
                return ObjectOutcome::Retry(RetryReason::ConverterUnusable(why));
            }
        };
        if let Some(why) = self.ignores(&obj.bucket, &obj.key, obj.size, Some(&converter)) {
            return ObjectOutcome::Ignored(why);
        }

        let now = self.clock.now_secs();
        let lease_until = now + left.as_secs() as i64 + self.settings.lease_margin.as_secs() as i64;
        let key = self.claim_key(obj);
        let (checkpoint, mut progress) = match self
            .claims
            .claim(&key, owner, lease_until, now)
            .await
        {
            Err(e) => return ObjectOutcome::Retry(RetryReason::other(e.to_string())),
            Ok(ClaimOutcome::AlreadyCompleted) => return ObjectOutcome::AlreadyCompleted,
            Ok(ClaimOutcome::AlreadyFailed { reason }) => {
                return ObjectOutcome::AlreadyFailed(reason)
            }
            Ok(ClaimOutcome::HeldByOther { lease_until }) => {
                return ObjectOutcome::HeldByOther { lease_until }
            }
            Ok(ClaimOutcome::Acquired {
                checkpoint,
                progress,
                takeover,
            }) => {
                if takeover {
                    tracing::info!(bucket = %obj.bucket, key = %obj.key, checkpoint, "resuming");
                }
                self.tell_confirmed(&progress);
                (checkpoint, progress)
            }
        };
        progress.invocations += 1;
        if progress.started_ms == 0 {
            progress.started_ms = self.clock.now_ms();
        }
        let attempt = Attempt {
            obj,
            key,
            owner,
            checkpoint,
            progress,
            config_version,
            lease_until,
            deadline,
        };
        let (mut attempt, input) = match self.open_content(attempt, &converter).await {
            Ok(opened) => opened,
            Err(outcome) => return outcome,
        };
        let end = self.run(input, converter, &mut attempt, deadline).await;
        self.finish(attempt, end).await
    }

    /// Opens the content the import reads: on a first start, pins its version (or ETag) on the
    /// claim; on a resume, reads exactly the pinned content from its restart point, or fails
    /// if it is gone. A compressed object's records are read held back until the checksum of
    /// their gzip member or zstd frame is checked (one download, one inflate); one whose
    /// member or frame was too large to hold is checked to its end by a pass of its own
    /// first, from where this invocation reads.
    async fn open_content<'a>(
        &self,
        mut at: Attempt<'a>,
        converter: &Converter,
    ) -> Result<(Attempt<'a>, Input), ObjectOutcome> {
        let obj = at.obj;
        let pinned = at.progress.content.clone();
        let want = pinned.clone().unwrap_or_else(|| Content {
            version_id: obj.version_id.clone(),
            etag: None,
        });
        if converter.file.file_type == crate::config::FileType::Parquet {
            // Read by ranges (the footer first; no whole-file compression to verify).
            let ranged = match self.source.ranges(&obj.bucket, &obj.key, &want).await {
                Ok(ranged) => ranged,
                Err(e) => return Err(self.not_opened(at, pinned.is_some(), e).await),
            };
            if pinned.is_none() {
                at.progress.content = Some(ranged.content);
                self.save_checkpoint(&at, 0).await?;
            }
            return Ok((at, Input::Ranges(ranged.reader)));
        }
        // A resume starts at the saved restart point (the confirmed part is not read again).
        let restart = at.progress.restart.take().filter(|r| {
            pinned.is_some()
                && r.n <= at.checkpoint
                && r.config == at.config_version
                && r.fits(&converter.file)
        });
        let from = restart.as_ref().map_or(0, |r| r.offset);
        let opened = match self.open_body(obj, &want, from).await {
            Ok(opened) => opened,
            Err(e) => return Err(self.not_opened(at, pinned.is_some(), e).await),
        };
        let content = opened.content;
        let mut reader = opened.reader;
        let verify_first = self.settings.verify_compressed && at.progress.verify_first;
        if verify_first {
            let (compression, limits) = (converter.file.compression, self.settings.limits);
            // The pass stops where reading would: an object that cannot be checked in time is
            // handed on (released, continued in a new message), never run into the deadline.
            let stop = (at.deadline - self.settings.stop_margin).into_std();
            let checked = tokio::task::spawn_blocking(move || {
                verify(reader, compression, limits, Some(stop))
            })
            .await;
            reader = match checked {
                Ok(Ok(Verified::Plain(reader))) => reader,
                Ok(Ok(Verified::Stopped(inflated))) => {
                    let why = self.check_stopped(&at, inflated);
                    return Err(self.hand_on(&at, why).await);
                }
                Ok(Ok(Verified::Intact(_))) => match self.open_body(obj, &content, from).await {
                    Ok(opened) => opened.reader,
                    Err(e) => return Err(self.not_opened(at, true, e).await),
                },
                Ok(Err(e)) if !e.is_retryable() => {
                    let why = format!("unreadable object: {e} ({})", sent_before(at.checkpoint));
                    return Err(self.fail(at, why, None).await);
                }
                Ok(Err(e)) => {
                    self.release(&at.key, at.owner).await;
                    return Err(ObjectOutcome::Retry(RetryReason::Other(format!(
                        "checking the object: {e}"
                    ))));
                }
                Err(e) => {
                    self.release(&at.key, at.owner).await;
                    return Err(ObjectOutcome::Retry(RetryReason::Other(format!(
                        "checking the object: {e}"
                    ))));
                }
            };
        }
        let left = at.deadline.saturating_duration_since(Instant::now());
        if verify_first && left < self.settings.stop_margin + MIN_WORK / 2 {
            // Checked, but about no time is left to read anything: handed on like a late
            // notice (the check is done again by the next invocation).
            return Err(self
                .hand_on(
                    &at,
                    RetryReason::TooLate(Some(
                        "the integrity check ended near the deadline".into(),
                    )),
                )
                .await);
        }
        let held = self.settings.verify_compressed && !verify_first;
        if pinned.is_some() {
            at.progress.restart = restart.clone();
            return Ok((at, Input::Stream(reader, restart, held)));
        }
        at.progress.content = Some(content);
        self.save_checkpoint(&at, 0).await?;
        Ok((at, Input::Stream(reader, None, held)))
    }

    /// Why an integrity check that the deadline stopped, `inflated` bytes in, hands its object
    /// on: in a new message, unless no invocation ever gets through the check; then retried
    /// through the notice, whose receive count ends in the dead-letter queue (an object too
    /// large, or a store too slow, for one invocation: raise the timeout, or
    /// S3I_VERIFY_COMPRESSED=false).
    pub(super) fn check_stopped(&self, at: &Attempt<'_>, inflated: u64) -> RetryReason {
        let why = format!(
            "the integrity check stopped at the deadline after {inflated} bytes inflated, \
             before any record was sent"
        );
        if at.progress.invocations < MAX_VERIFY_HANDOVERS {
            RetryReason::TooLate(Some(why))
        } else {
            RetryReason::Other(format!(
                "{why}, in each of {} invocations",
                at.progress.invocations
            ))
        }
    }

    /// Hands an object on before anything was sent: its progress (this invocation counted) is
    /// saved with the lease ended, so that the continuation takes it up at once.
    pub(super) async fn hand_on(&self, at: &Attempt<'_>, why: RetryReason) -> ObjectOutcome {
        let now = self.clock.now_secs();
        let saved = self
            .claims
            .checkpoint(&at.key, at.owner, at.checkpoint, &at.progress, now - 1)
            .await;
        self.tell_confirmed(&at.progress);
        if let Err(e) = saved {
            tracing::warn!(error = %e, "claim not handed on; it resumes when its lease ends");
        }
        ObjectOutcome::Retry(why)
    }

    /// What an object that could not be opened comes to. Gone before anything was read:
    /// acknowledged, never FAILED (new content under the key imports normally). Gone or
    /// changed after an earlier invocation read from it: FAILED, never continued into other
    /// content.
    async fn not_opened(&self, at: Attempt<'_>, pinned: bool, e: SourceError) -> ObjectOutcome {
        match e {
            SourceError::Missing(_) | SourceError::Changed(_) if pinned => {
                let c = &at.progress.counts;
                let why = format!(
                    "the object changed during the import ({e}): its first {} records were \
                     confirmed ({} events sent) from {}; `s3-import retry` imports the new \
                     content from its first record",
                    at.checkpoint,
                    c.sent,
                    at.progress
                        .content
                        .as_ref()
                        .map_or_else(String::new, |c| c.to_string()),
                );
                self.fail(at, why, None).await
            }
            SourceError::Missing(why) | SourceError::Changed(why) => {
                self.release(&at.key, at.owner).await;
                ObjectOutcome::Gone(why)
            }
            e if e.is_permanent() => self.fail(at, e.to_string(), None).await,
            e => {
                self.release(&at.key, at.owner).await;
                ObjectOutcome::Retry(RetryReason::other(e.to_string()))
            }
        }
    }
}
