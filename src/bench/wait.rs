//! Waiting until every accepted batch is stored, by polling the `batches` table.
//!
//! Polling must not load the database it measures, so it does not ask about every
//! accepted batch each time. Batch ids are UUIDv7 (time-ordered) and workers take
//! batches roughly in arrival order, so it tracks a frontier: the smallest batch id in
//! the run's id range that is still `queued` or `processing`. Everything below the
//! frontier is final (`completed` and `failed` are terminal), so each poll scans the
//! primary key from the last frontier onwards and stops at the first unfinished batch.
//! When no batch in the range is unfinished the run is done; one exact query over the
//! accepted ids then checks that they are all `completed`.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use sqlx::PgPool;
use uuid::Uuid;

/// How often the frontier is polled: the end of the run is known to within this.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The accepted batches, sorted by id, with the events up to each.
#[derive(Debug, Clone)]
pub struct AcceptedSet {
    ids: Vec<Uuid>,
    /// `events_before[i]`: events in the batches `ids[..i]`.
    events_before: Vec<u64>,
}

impl AcceptedSet {
    pub fn new(mut batches: Vec<(Uuid, u32)>) -> Self {
        batches.sort_unstable_by_key(|&(id, _)| id);
        let mut events_before = Vec::with_capacity(batches.len() + 1);
        let mut sum = 0u64;
        events_before.push(0);
        for &(_, n) in &batches {
            sum += u64::from(n);
            events_before.push(sum);
        }
        Self {
            ids: batches.into_iter().map(|(id, _)| id).collect(),
            events_before,
        }
    }

    pub fn ids(&self) -> &[Uuid] {
        &self.ids
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn total_events(&self) -> u64 {
        *self.events_before.last().expect("never empty")
    }

    /// The first and last id (PostgreSQL orders uuids bytewise, as `Uuid` does).
    pub fn range(&self) -> Option<(Uuid, Uuid)> {
        Some((*self.ids.first()?, *self.ids.last()?))
    }

    /// Events known to be final given the frontier: all those in batches below it, or
    /// all of them when there is none.
    pub fn events_below(&self, frontier: Option<Uuid>) -> u64 {
        match frontier {
            None => self.total_events(),
            Some(f) => self.events_before[self.ids.partition_point(|id| *id < f)],
        }
    }
}

/// When to give up waiting.
#[derive(Debug, Clone, Copy)]
pub struct WaitPolicy {
    /// From the end of the load to the last batch stored.
    pub deadline: Duration,
    /// Without the frontier moving.
    pub stall: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Done,
    KeepWaiting,
    TimedOut,
    Stalled,
}

/// What to do after a poll: `unfinished` says whether any batch is still queued or
/// processing, `waited` is the time since waiting began, `since_progress` since the
/// frontier last moved. Finishing wins over the limits, so a run that completes on
/// the last poll counts.
pub fn decide(
    policy: &WaitPolicy,
    unfinished: bool,
    waited: Duration,
    since_progress: Duration,
) -> Decision {
    if !unfinished {
        Decision::Done
    } else if waited >= policy.deadline {
        Decision::TimedOut
    } else if since_progress >= policy.stall {
        Decision::Stalled
    } else {
        Decision::KeepWaiting
    }
}

/// Polls until no accepted batch is unfinished; returns the instant of the poll that saw
/// it (taken as the query was sent, so the true end lies within one poll interval
/// before it).
pub async fn until_stored(
    pool: &PgPool,
    accepted: &AcceptedSet,
    policy: WaitPolicy,
    progress: &ProgressBar,
) -> anyhow::Result<Instant> {
    let Some((first, last)) = accepted.range() else {
        return Ok(Instant::now());
    };
    // A database that does not have the batches would look "done" at once.
    let known: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM batches WHERE batch_id = $1)")
            .bind(last)
            .fetch_one(pool)
            .await?;
    if !known {
        anyhow::bail!(
            "batch {last} was accepted by the API but is not in the database at \
             --database-url: point it at the database the API uses"
        );
    }
    let started = Instant::now();
    let mut last_progress = started;
    let mut low = first;
    let mut done_events = 0;
    loop {
        let polled_at = Instant::now();
        let frontier: Option<Uuid> = sqlx::query_scalar(
            "SELECT batch_id FROM batches
             WHERE batch_id BETWEEN $1 AND $2 AND status IN ('queued', 'processing')
             ORDER BY batch_id LIMIT 1",
        )
        .bind(low)
        .bind(last)
        .fetch_optional(pool)
        .await?;
        let now_done = accepted.events_below(frontier);
        if now_done > done_events {
            done_events = now_done;
            last_progress = polled_at;
            progress.set_position(done_events);
        }
        match decide(
            &policy,
            frontier.is_some(),
            polled_at - started,
            polled_at - last_progress,
        ) {
            Decision::Done => return Ok(polled_at),
            Decision::KeepWaiting => {}
            Decision::TimedOut => anyhow::bail!(
                "not every accepted batch was stored within {:?} after the load ended \
                 ({done_events} of {} events are); batch {} is still unfinished",
                policy.deadline,
                accepted.total_events(),
                frontier.expect("unfinished"),
            ),
            Decision::Stalled => anyhow::bail!(
                "no progress for {:?}: batch {} is still unfinished ({done_events} of {} \
                 events stored); are workers running against this database?",
                policy.stall,
                frontier.expect("unfinished"),
                accepted.total_events(),
            ),
        }
        low = frontier.expect("unfinished");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The accepted batches' final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchTally {
    pub found: i64,
    pub completed: i64,
    pub failed: i64,
    pub inserted: i64,
    pub duplicates: i64,
}

pub async fn tally(pool: &PgPool, accepted: &AcceptedSet) -> Result<BatchTally, sqlx::Error> {
    let (found, completed, failed, inserted, duplicates): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT count(*),
                    count(*) FILTER (WHERE status = 'completed'),
                    count(*) FILTER (WHERE status = 'failed'),
                    coalesce(sum(inserted), 0)::bigint,
                    coalesce(sum(duplicates), 0)::bigint
             FROM batches WHERE batch_id = ANY($1)",
        )
        .bind(accepted.ids())
        .fetch_one(pool)
        .await?;
    Ok(BatchTally {
        found,
        completed,
        failed,
        inserted,
        duplicates,
    })
}

/// Why the stored state does not match what was accepted, if it does not.
pub fn check_tally(tally: &BatchTally, batches: usize, events: u64) -> Result<(), String> {
    let batches = batches as i64;
    if tally.found != batches {
        return Err(format!(
            "{} of {batches} accepted batches are missing from the database",
            batches - tally.found
        ));
    }
    if tally.failed > 0 {
        return Err(format!(
            "{} batches failed (see `app failed list`)",
            tally.failed
        ));
    }
    if tally.completed != batches {
        return Err(format!(
            "{} of {batches} batches are not completed",
            batches - tally.completed
        ));
    }
    if tally.inserted + tally.duplicates != events as i64 {
        return Err(format!(
            "the batches account for {} events, {events} were accepted",
            tally.inserted + tally.duplicates
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn the_set_is_sorted_and_counts_events_below_a_frontier() {
        let set = AcceptedSet::new(vec![(id(30), 3), (id(10), 1), (id(20), 2)]);
        assert_eq!(set.ids(), &[id(10), id(20), id(30)]);
        assert_eq!(set.total_events(), 6);
        assert_eq!(set.range(), Some((id(10), id(30))));
        assert_eq!(set.events_below(Some(id(10))), 0);
        assert_eq!(set.events_below(Some(id(20))), 1);
        assert_eq!(set.events_below(Some(id(25))), 3); // a batch not ours, between
        assert_eq!(set.events_below(Some(id(30))), 3);
        assert_eq!(set.events_below(None), 6);
    }

    #[test]
    fn an_empty_set_has_no_range() {
        let set = AcceptedSet::new(vec![]);
        assert!(set.is_empty());
        assert_eq!(set.range(), None);
        assert_eq!(set.events_below(None), 0);
    }

    #[test]
    fn uuid_order_matches_postgres_bytewise_order() {
        // PostgreSQL compares uuids as 16 bytes, most significant first.
        let a: Uuid = "00000000-0000-0000-0000-0000000000ff".parse().unwrap();
        let b: Uuid = "00000000-0000-0000-0000-000000000100".parse().unwrap();
        let c: Uuid = "01000000-0000-0000-0000-000000000000".parse().unwrap();
        assert!(a < b && b < c);
    }

    const POLICY: WaitPolicy = WaitPolicy {
        deadline: Duration::from_secs(60),
        stall: Duration::from_secs(10),
    };

    #[test]
    fn done_when_nothing_is_unfinished_even_past_the_limits() {
        let s = Duration::from_secs;
        assert_eq!(decide(&POLICY, false, s(1), s(0)), Decision::Done);
        assert_eq!(decide(&POLICY, false, s(100), s(100)), Decision::Done);
    }

    #[test]
    fn waits_within_the_limits_and_gives_up_beyond_them() {
        let s = Duration::from_secs;
        assert_eq!(decide(&POLICY, true, s(5), s(5)), Decision::KeepWaiting);
        assert_eq!(decide(&POLICY, true, s(59), s(9)), Decision::KeepWaiting);
        assert_eq!(decide(&POLICY, true, s(60), s(0)), Decision::TimedOut);
        assert_eq!(decide(&POLICY, true, s(30), s(10)), Decision::Stalled);
        // Past both: the deadline is the one reported.
        assert_eq!(decide(&POLICY, true, s(61), s(61)), Decision::TimedOut);
    }

    fn tally(found: i64, completed: i64, failed: i64, inserted: i64) -> BatchTally {
        BatchTally {
            found,
            completed,
            failed,
            inserted,
            duplicates: 0,
        }
    }

    #[test]
    fn the_tally_must_account_for_every_batch_and_event() {
        assert_eq!(check_tally(&tally(3, 3, 0, 300), 3, 300), Ok(()));
        assert!(check_tally(&tally(2, 2, 0, 200), 3, 300)
            .unwrap_err()
            .contains("missing"));
        assert!(check_tally(&tally(3, 2, 1, 200), 3, 300)
            .unwrap_err()
            .contains("failed"));
        assert!(check_tally(&tally(3, 2, 0, 200), 3, 300)
            .unwrap_err()
            .contains("not completed"));
        assert!(check_tally(&tally(3, 3, 0, 299), 3, 300)
            .unwrap_err()
            .contains("299"));
        let with_duplicates = BatchTally {
            duplicates: 1,
            ..tally(3, 3, 0, 299)
        };
        assert_eq!(check_tally(&with_duplicates, 3, 300), Ok(()));
    }
}
