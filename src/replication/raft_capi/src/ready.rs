//! Ready handles: everything one Ready (or LightReady) hands to the application, owned by
//! the handle so that C reads it through plain pointers until `distri_raft_ready_free`, and
//! the accessors C uses for that (pure reads; they cannot fail).

use protobuf::Message as PbMessage;
use raft::eraftpb::{Entry, Message, Snapshot};
use raft::{ReadState, Ready};

use crate::{CResult, ERR_RAFT};

#[repr(C)]
pub struct DistriRaftMessage {
    pub to: u64,
    pub msg_type: i32,
    pub data: *const u8,
    pub len: usize,
}

#[repr(C)]
pub struct DistriRaftEntry {
    pub index: u64,
    pub term: u64,
    pub entry_type: i32,
    pub data: *const u8,
    pub data_len: usize,
    pub context: *const u8,
    pub context_len: usize,
}

#[repr(C)]
pub struct DistriRaftHardState {
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
}

#[repr(C)]
pub struct DistriRaftSoftState {
    pub leader_id: u64,
    pub role: i32,
}

#[repr(C)]
pub struct DistriRaftReadState {
    pub index: u64,
    pub context: *const u8,
    pub context_len: usize,
}

#[repr(C)]
pub struct DistriRaftSnapshot {
    pub index: u64,
    pub term: u64,
    pub data: *const u8,
    pub data_len: usize,
    pub voters: *const u64,
    pub voters_len: usize,
    pub learners: *const u64,
    pub learners_len: usize,
}

pub struct DistriRaftReady {
    pub(crate) ready: Option<Ready>, // the husk passed back to advance*; None for light readies
    pub(crate) number: u64,
    pub(crate) soft_state: Option<DistriRaftSoftState>,
    pub(crate) hard_state: Option<DistriRaftHardState>,
    pub(crate) must_sync: bool,
    pub(crate) commit_index: u64,
    pub(crate) snapshot: Snapshot,
    pub(crate) message_bytes: Vec<Vec<u8>>,
    pub(crate) messages: Vec<DistriRaftMessage>,
    pub(crate) persisted_messages: Vec<DistriRaftMessage>,
    pub(crate) entries_owned: Vec<Entry>,
    pub(crate) entries: Vec<DistriRaftEntry>,
    pub(crate) committed_owned: Vec<Entry>,
    pub(crate) committed: Vec<DistriRaftEntry>,
    pub(crate) read_states_owned: Vec<ReadState>,
    pub(crate) read_states: Vec<DistriRaftReadState>,
}

pub(crate) fn entry_views(entries: &[Entry]) -> Vec<DistriRaftEntry> {
    entries
        .iter()
        .map(|e| DistriRaftEntry {
            index: e.index,
            term: e.term,
            entry_type: e.get_entry_type() as i32,
            data: e.data.as_ptr(),
            data_len: e.data.len(),
            context: e.context.as_ptr(),
            context_len: e.context.len(),
        })
        .collect()
}

impl DistriRaftReady {
    pub(crate) fn new(number: u64) -> Box<DistriRaftReady> {
        Box::new(DistriRaftReady {
            ready: None,
            number,
            soft_state: None,
            hard_state: None,
            must_sync: false,
            commit_index: 0,
            snapshot: Snapshot::default(),
            message_bytes: Vec::new(),
            messages: Vec::new(),
            persisted_messages: Vec::new(),
            entries_owned: Vec::new(),
            entries: Vec::new(),
            committed_owned: Vec::new(),
            committed: Vec::new(),
            read_states_owned: Vec::new(),
            read_states: Vec::new(),
        })
    }

    // Serialises `msgs`; the views point into `message_bytes`, whose inner buffers never move.
    pub(crate) fn add_messages(&mut self, msgs: Vec<Message>, persisted: bool) -> CResult<()> {
        for m in msgs {
            let bytes = m.write_to_bytes().map_err(|e| (ERR_RAFT, e.to_string()))?;
            let view = DistriRaftMessage {
                to: m.to,
                msg_type: m.get_msg_type() as i32,
                data: bytes.as_ptr(),
                len: bytes.len(),
            };
            self.message_bytes.push(bytes);
            if persisted {
                self.persisted_messages.push(view);
            } else {
                self.messages.push(view);
            }
        }
        Ok(())
    }

    pub(crate) fn set_committed(&mut self, committed: Vec<Entry>) {
        self.committed_owned = committed;
        self.committed = entry_views(&self.committed_owned);
    }
}

// ---------------------------------------------------------------------------------------------
// Accessors
// ---------------------------------------------------------------------------------------------

/// # Safety
/// `ready` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_ready_number(ready: *const DistriRaftReady) -> u64 {
    (*ready).number
}

/// # Safety
/// `ready` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_ready_must_sync(ready: *const DistriRaftReady) -> i32 {
    (*ready).must_sync as i32
}

/// # Safety
/// `ready` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_ready_commit_index(ready: *const DistriRaftReady) -> u64 {
    (*ready).commit_index
}

/// # Safety
/// `ready` must be a live handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_ready_soft_state(
    ready: *const DistriRaftReady,
    out: *mut DistriRaftSoftState,
) -> i32 {
    match &(*ready).soft_state {
        Some(s) => {
            *out = DistriRaftSoftState {
                leader_id: s.leader_id,
                role: s.role,
            };
            1
        }
        None => 0,
    }
}

/// # Safety
/// `ready` must be a live handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_ready_hard_state(
    ready: *const DistriRaftReady,
    out: *mut DistriRaftHardState,
) -> i32 {
    match &(*ready).hard_state {
        Some(s) => {
            *out = DistriRaftHardState {
                term: s.term,
                vote: s.vote,
                commit: s.commit,
            };
            1
        }
        None => 0,
    }
}

/// # Safety
/// `ready` must be a live handle; `out` writable.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_ready_snapshot(
    ready: *const DistriRaftReady,
    out: *mut DistriRaftSnapshot,
) -> i32 {
    let s = &(*ready).snapshot;
    if s.is_empty() {
        return 0;
    }
    let meta = s.get_metadata();
    let cs = meta.get_conf_state();
    *out = DistriRaftSnapshot {
        index: meta.index,
        term: meta.term,
        data: s.data.as_ptr(),
        data_len: s.data.len(),
        voters: cs.voters.as_ptr(),
        voters_len: cs.voters.len(),
        learners: cs.learners.as_ptr(),
        learners_len: cs.learners.len(),
    };
    1
}

/// # Safety
/// `ready` must be a live handle; `len` writable.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_ready_messages(
    ready: *const DistriRaftReady,
    persisted: i32,
    len: *mut usize,
) -> *const DistriRaftMessage {
    let v = if persisted != 0 {
        &(*ready).persisted_messages
    } else {
        &(*ready).messages
    };
    *len = v.len();
    v.as_ptr()
}

/// # Safety
/// `ready` must be a live handle; `len` writable.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_ready_entries(
    ready: *const DistriRaftReady,
    len: *mut usize,
) -> *const DistriRaftEntry {
    *len = (*ready).entries.len();
    (*ready).entries.as_ptr()
}

/// # Safety
/// `ready` must be a live handle; `len` writable.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_ready_committed_entries(
    ready: *const DistriRaftReady,
    len: *mut usize,
) -> *const DistriRaftEntry {
    *len = (*ready).committed.len();
    (*ready).committed.as_ptr()
}

/// # Safety
/// `ready` must be a live handle; `len` writable.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_ready_read_states(
    ready: *const DistriRaftReady,
    len: *mut usize,
) -> *const DistriRaftReadState {
    *len = (*ready).read_states.len();
    (*ready).read_states.as_ptr()
}
