//! Restart: rebuilding a node's `Store` from what the C++ side persisted (hard state, the
//! metadata of the newest snapshot, the entries after it), for `distri_raft_node_restore`.
//!
//! The input is checked before raft sees it: raft-rs asserts its invariants with panics
//! (`hs.commit out of range`, `raft logs should be continuous`, `invalid restore`), and a
//! damaged or mis-read durable log is a caller error that deserves a message, not a poisoned
//! node. The checks are cheap (one pass over the entries, no decoding of their data).
//!
//! The snapshot's data is not passed in: the C++ side keeps the state-machine snapshot itself
//! and the Store starts with no snapshot it could serve. When a follower needs one, raft asks
//! (`Store::snapshot`, `distri_raft_take_snapshot_request`) and the C++ side answers with
//! `distri_raft_compact`, exactly as for a node that never restarted.

use std::cell::Cell;
use std::collections::HashSet;
use std::slice;

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Snapshot};
use raft::storage::MemStorage;

use crate::ready::{DistriRaftEntry, DistriRaftHardState};
use crate::store::Store;
use crate::{bytes_in, ids_in, invalid, raft_err, CResult};

#[repr(C)]
pub struct DistriRaftRestoreState {
    pub hard_state: DistriRaftHardState,
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    pub voters: *const u64,
    pub voters_len: usize,
    pub learners: *const u64,
    pub learners_len: usize,
    pub entries: *const DistriRaftEntry,
    pub entries_len: usize,
}

/// What `distri_raft_node_restore` builds the node from, checked and copied out of C memory.
pub(crate) struct Restored {
    pub(crate) store: Store,
    /// Conf change entries in (snapshot index, applied]: the state machine applied them before
    /// the restart, so raft will not hand them out again, but the membership read from the
    /// snapshot predates them. They are re-applied to raft once the node exists.
    pub(crate) applied_conf_changes: Vec<Entry>,
}

fn entry_type(code: i32) -> CResult<EntryType> {
    match code {
        0 => Ok(EntryType::EntryNormal),
        1 => Ok(EntryType::EntryConfChange),
        2 => Ok(EntryType::EntryConfChangeV2),
        _ => Err(invalid(&format!("entry of unknown type {code}"))),
    }
}

// Ids of one membership: non-zero, no duplicates, nobody both voter and learner (raft-rs
// panics on a conf state it cannot rebuild exactly).
fn check_members(voters: &[u64], learners: &[u64]) -> CResult<()> {
    let mut seen = HashSet::new();
    for id in voters.iter().chain(learners) {
        if *id == 0 {
            return Err(invalid("member id 0 in the snapshot membership"));
        }
        if !seen.insert(*id) {
            return Err(invalid(&format!(
                "member {id} listed twice in the snapshot membership"
            )));
        }
    }
    Ok(())
}

/// Checks `state` against `applied` (the config's) and builds the Store.
///
/// # Safety
/// The pointers in `state` follow raft_capi.h: valid for their lengths, or null with length 0.
pub(crate) unsafe fn restore(state: &DistriRaftRestoreState, applied: u64) -> CResult<Restored> {
    let voters = ids_in(state.voters, state.voters_len)?;
    let learners = ids_in(state.learners, state.learners_len)?;
    let raw_entries: &[DistriRaftEntry] = if state.entries_len == 0 {
        &[]
    } else if state.entries.is_null() {
        return Err(invalid("null entry list with non-zero length"));
    } else {
        slice::from_raw_parts(state.entries, state.entries_len)
    };
    let hs = &state.hard_state;
    let snap_index = state.snapshot_index;
    let snap_term = state.snapshot_term;

    // The snapshot: none (index 0) only for a node that joined and never received one.
    if snap_index == 0 {
        if snap_term != 0 || !voters.is_empty() || !learners.is_empty() || !raw_entries.is_empty() {
            return Err(invalid(
                "no snapshot (index 0) but a snapshot term, members or entries: every log of a \
                 group starts with a snapshot",
            ));
        }
    } else {
        if snap_term == 0 {
            return Err(invalid("snapshot at a non-zero index with term 0"));
        }
        if voters.is_empty() {
            return Err(invalid("snapshot membership without voters"));
        }
        check_members(&voters, &learners)?;
    }

    // The entries: contiguous from snapshot index + 1, terms never going down.
    let mut entries = Vec::with_capacity(raw_entries.len());
    let mut prev_term = snap_term;
    for (i, e) in raw_entries.iter().enumerate() {
        let want = snap_index + 1 + i as u64;
        if e.index != want {
            return Err(invalid(&format!(
                "entries not contiguous after the snapshot: entry {i} has index {}, not {want}",
                e.index
            )));
        }
        if e.term < prev_term {
            return Err(invalid(&format!(
                "entry {} has term {}, below the term {prev_term} before it",
                e.index, e.term
            )));
        }
        prev_term = e.term;
        let mut entry = Entry {
            index: e.index,
            term: e.term,
            ..Default::default()
        };
        entry.set_entry_type(entry_type(e.entry_type)?);
        entry.data = bytes_in(e.data, e.data_len)?.to_vec().into();
        entry.context = bytes_in(e.context, e.context_len)?.to_vec().into();
        entries.push(entry);
    }
    let last_index = snap_index + entries.len() as u64;

    // The hard state and applied index against the log.
    if hs.term < prev_term {
        return Err(invalid(&format!(
            "hard state term {} below the last log term {prev_term}",
            hs.term
        )));
    }
    if hs.commit < snap_index || hs.commit > last_index {
        return Err(invalid(&format!(
            "commit index {} outside [snapshot index {snap_index}, last index {last_index}]",
            hs.commit
        )));
    }
    if applied < snap_index || applied > hs.commit {
        return Err(invalid(&format!(
            "applied index {applied} outside [snapshot index {snap_index}, commit {}]",
            hs.commit
        )));
    }

    let applied_conf_changes = entries
        .iter()
        .filter(|e| e.index <= applied && e.get_entry_type() != EntryType::EntryNormal)
        .cloned()
        .collect();

    let mem = MemStorage::new();
    if snap_index != 0 {
        // Metadata only: MemStorage needs the index, term and membership to start the log.
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = snap_index;
        meta.term = snap_term;
        meta.set_conf_state(ConfState::from((voters, learners)));
        mem.wl().apply_snapshot(snap).map_err(raft_err)?;
    }
    mem.wl().append(&entries).map_err(raft_err)?;
    mem.wl().set_hardstate(HardState {
        term: hs.term,
        vote: hs.vote,
        commit: hs.commit,
        ..Default::default()
    });
    Ok(Restored {
        store: Store {
            mem,
            // Nothing to serve until distri_raft_compact gives the data (see the file comment).
            snapshot: Snapshot::default(),
            snapshot_requested: Cell::new(false),
        },
        applied_conf_changes,
    })
}
