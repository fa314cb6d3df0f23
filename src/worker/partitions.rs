//! The partitions a worker's events need, made before it stores them.
//!
//! Every `serve` and `work` makes the partitions of the days around today ahead of need
//! (`maintenance`); a batch may also carry events of any other day (a game backfilling
//! months of history, a device with its clock years off). Before storing a group, a
//! worker makes sure the partition of each (game, day) its events fall on exists. It
//! remembers the ones that do, so this costs no query in the usual case.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Mutex, PoisonError};

use sqlx::PgPool;
use time::Date;

use crate::domain::GameId;
use crate::queue::JobPayload;
use crate::store::partitions;

#[derive(Default)]
pub struct KnownPartitions {
    known: Mutex<HashSet<(GameId, Date)>>,
}

impl KnownPartitions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(GameId, Date)>> {
        // A set of facts: whatever panicked, each entry stays true or is re-checked.
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes sure every (game, day) the events of `payloads` fall on has its partition.
    pub async fn ensure<'a>(
        &self,
        pool: &PgPool,
        payloads: impl IntoIterator<Item = &'a JobPayload>,
    ) -> Result<(), sqlx::Error> {
        let needed: BTreeSet<(GameId, Date)> = payloads
            .into_iter()
            .flat_map(|p| {
                p.batch
                    .events
                    .iter()
                    .map(|e| (p.game_id, partitions::day_of(e.header().occurred_at)))
            })
            .collect();
        let missing: Vec<(GameId, Date)> = {
            let known = self.lock();
            needed.into_iter().filter(|k| !known.contains(k)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        // Those that exist already are learnt in one query; the rest are made. Every
        // (game, day) there was, and every one made, is known from then on.
        let mut existing = partitions::existing(pool).await?;
        for (game, day) in missing {
            if !existing.contains(&(game, day)) && partitions::ensure(pool, game, day).await? {
                tracing::info!(%game, %day, "made the partitions of a day on demand");
            }
            existing.insert((game, day));
        }
        *self.lock() = existing;
        Ok(())
    }

    /// Forgets what it knows: after a failed store, in case retention dropped a day it
    /// knew of (the next attempt makes it again).
    pub fn forget(&self) {
        self.lock().clear();
    }
}
