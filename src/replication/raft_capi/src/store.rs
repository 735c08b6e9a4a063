//! The log raft reads: raft-rs `MemStorage` plus the newest state-machine snapshot.
//!
//! `distri_raft_take_ready` copies each Ready's snapshot, entries and hard state in here;
//! making them durable is the C++ side's job. This is the seam a durable store replaces.

use std::cell::Cell;

use raft::eraftpb::{Entry, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// The log raft reads: `MemStorage` for entries, hard state and conf state, plus the newest
/// state-machine snapshot, which `MemStorage` cannot hold (its own `snapshot()` has no data).
pub(crate) struct Store {
    pub(crate) mem: MemStorage,
    // The snapshot raft may send: the bootstrap snapshot, one received, or one given to
    // compact. Empty after a restore (the data stays on the C++ side) until compact refills it;
    // the log's own start (MemStorage's snapshot metadata) is then newer than this.
    pub(crate) snapshot: Snapshot,
    // Set when raft needed a snapshot that `snapshot` cannot serve; the C++ side polls it
    // (distri_raft_take_snapshot_request) and answers with distri_raft_compact. A Cell because
    // Storage::snapshot takes &self.
    pub(crate) snapshot_requested: Cell<bool>,
}

impl Storage for Store {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }
    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }
    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }
    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // Raft asks when a follower needs entries the log no longer holds. The kept snapshot
        // serves only if it is recent enough and its membership includes the follower (a
        // follower refuses a snapshot that does not name it, e.g. one taken before it was
        // added); otherwise ask the C++ side for a fresh one and let raft retry later.
        let meta = self.snapshot.get_metadata();
        let cs = meta.get_conf_state();
        let names_to = cs
            .voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .chain(&cs.learners_next)
            .any(|id| *id == to);
        if self.snapshot.is_empty() || meta.index < request_index || !names_to {
            self.snapshot_requested.set(true);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}
