//! distri_raft_capi: a C ABI over TiKV's `raft` crate (raft-rs 0.7).
//!
//! Distri's C++ side owns every piece of I/O (transport, durable storage, timers); this crate
//! only wraps `RawNode` so that C++ can drive the Ready loop. The contract of every function
//! is documented in `src/replication/raft_capi.h`; docs/replication.md explains how Distri
//! uses it. Nothing here does I/O or reads the clock.
//!
//! Rules kept by every `extern "C"` function:
//! 1. No panic crosses the boundary: each call runs inside `catch_unwind`. A panic inside raft
//!    leaves the node in an unknown state, so the node is then *poisoned*: every later call on
//!    it fails with `DISTRI_RAFT_ERR_POISONED`, and the C++ side must stop the node.
//! 2. Errors are return codes; the text of the last error is kept in the node
//!    (`distri_raft_node_last_error`).
//! 3. Buffers handed out (ready parts) are owned by the ready handle and live until
//!    `distri_raft_ready_free`. Buffers handed in are copied before the call returns.
//!
//! Storage: raft reads its log from `Store`, an in-memory log (raft-rs `MemStorage`) plus the
//! newest state-machine snapshot. The wrapper copies each Ready's snapshot, entries and hard
//! state into it as the Ready is taken; making them durable is the C++ side's job, and it
//! reports that with `on_persist_ready` / `advance*`. After a restart,
//! `distri_raft_node_restore` rebuilds the Store from what C++ persisted (restore.rs).

mod ready;
mod restore;
mod store;

use std::cell::Cell;
use std::ffi::CString;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::slice;

use protobuf::Message as PbMessage;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, EntryType, HardState,
    Message, MessageType, Snapshot,
};
use raft::storage::MemStorage;
use raft::{Config, RawNode, ReadOnlyOption, SnapshotStatus, StateRole, Storage};

use ready::*;
use restore::DistriRaftRestoreState;
use store::Store;

// Return codes; keep in sync with raft_capi.h.
const OK: i32 = 0;
const ERR_INVALID_ARGUMENT: i32 = 1;
const ERR_PROPOSAL_DROPPED: i32 = 2;
const ERR_RAFT: i32 = 3;
const ERR_PANIC: i32 = 4;
const ERR_POISONED: i32 = 5;

// Index and term of the bootstrap snapshot holding the initial membership.
const BOOTSTRAP_INDEX: u64 = 1;
const BOOTSTRAP_TERM: u64 = 1;

type CResult<T> = Result<T, (i32, String)>;

fn raft_err(e: raft::Error) -> (i32, String) {
    match e {
        raft::Error::ProposalDropped => (ERR_PROPOSAL_DROPPED, e.to_string()),
        raft::Error::ConfigInvalid(_) | raft::Error::CodecError(_) => {
            (ERR_INVALID_ARGUMENT, e.to_string())
        }
        _ => (ERR_RAFT, e.to_string()),
    }
}

fn invalid(msg: &str) -> (i32, String) {
    (ERR_INVALID_ARGUMENT, msg.to_string())
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panic in raft: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panic in raft: {s}")
    } else {
        "panic in raft".to_string()
    }
}

// Borrowed input bytes; (null, 0) is the empty slice.
unsafe fn bytes_in<'a>(data: *const u8, len: usize) -> CResult<&'a [u8]> {
    if len == 0 {
        Ok(&[])
    } else if data.is_null() {
        Err(invalid("null pointer with non-zero length"))
    } else {
        Ok(slice::from_raw_parts(data, len))
    }
}

unsafe fn ids_in(ids: *const u64, len: usize) -> CResult<Vec<u64>> {
    if len == 0 {
        Ok(Vec::new())
    } else if ids.is_null() {
        Err(invalid("null id list with non-zero length"))
    } else {
        Ok(slice::from_raw_parts(ids, len).to_vec())
    }
}

// ---------------------------------------------------------------------------------------------
// C-visible structs (layouts mirror raft_capi.h)
// ---------------------------------------------------------------------------------------------

#[repr(C)]
pub struct DistriRaftConfig {
    pub id: u64,
    pub voters: *const u64,
    pub voters_len: usize,
    pub learners: *const u64,
    pub learners_len: usize,
    pub election_tick: u32,
    pub heartbeat_tick: u32,
    pub applied: u64,
    pub max_size_per_msg: u64,
    pub max_inflight_msgs: u64,
    pub check_quorum: u8,
    pub pre_vote: u8,
}

#[repr(C)]
pub struct DistriRaftStatus {
    pub id: u64,
    pub term: u64,
    pub vote: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub leader_id: u64,
    pub role: i32,
}

#[repr(C)]
pub struct DistriRaftConfChange {
    pub change_type: i32, // 0 add voter, 1 remove, 2 add learner (eraftpb::ConfChangeType)
    pub node_id: u64,
}

fn role_code(r: StateRole) -> i32 {
    match r {
        StateRole::Follower => 0,
        StateRole::Candidate => 1,
        StateRole::Leader => 2,
        StateRole::PreCandidate => 3,
    }
}

// ---------------------------------------------------------------------------------------------
// The node
// ---------------------------------------------------------------------------------------------

pub struct DistriRaftNode {
    raw: RawNode<Store>,
    poisoned: bool,
    last_error: CString,
}

/// Everything one Ready (or LightReady) hands to the application, owned here so the C side can
/// read it through plain pointers until `distri_raft_ready_free`.
// Runs `f` on a live node: null and poison checks, panic capture, error text.
unsafe fn with_node<F>(node: *mut DistriRaftNode, f: F) -> i32
where
    F: FnOnce(&mut DistriRaftNode) -> CResult<()>,
{
    let Some(node) = node.as_mut() else {
        return ERR_INVALID_ARGUMENT;
    };
    if node.poisoned {
        return ERR_POISONED;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| f(node)));
    let (code, text) = match outcome {
        Ok(Ok(())) => return OK,
        Ok(Err(e)) => e,
        Err(payload) => {
            node.poisoned = true;
            (ERR_PANIC, panic_text(payload))
        }
    };
    node.last_error = CString::new(text.replace('\0', " ")).unwrap_or_default();
    code
}

unsafe fn write_error(buf: *mut c_char, cap: usize, text: &str) {
    if buf.is_null() || cap == 0 {
        return;
    }
    let n = text.len().min(cap - 1);
    ptr::copy_nonoverlapping(text.as_ptr() as *const c_char, buf, n);
    *buf.add(n) = 0;
}

// ---------------------------------------------------------------------------------------------
// Node lifecycle
// ---------------------------------------------------------------------------------------------

// The raft-rs config of a C config (membership aside), validated.
fn raft_config(cfg: &DistriRaftConfig) -> CResult<Config> {
    let mut c = Config {
        id: cfg.id,
        election_tick: cfg.election_tick as usize,
        heartbeat_tick: cfg.heartbeat_tick as usize,
        applied: cfg.applied,
        check_quorum: cfg.check_quorum != 0,
        pre_vote: cfg.pre_vote != 0,
        // Linearizable reads confirm leadership with a heartbeat round, never a lease.
        read_only_option: ReadOnlyOption::Safe,
        ..Default::default()
    };
    if cfg.max_size_per_msg != 0 {
        c.max_size_per_msg = cfg.max_size_per_msg;
    }
    if cfg.max_inflight_msgs != 0 {
        c.max_inflight_msgs = cfg.max_inflight_msgs as usize;
    }
    c.validate().map_err(raft_err)?;
    Ok(c)
}

fn new_raw_node(c: &Config, store: Store) -> CResult<Box<DistriRaftNode>> {
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let raw = RawNode::new(c, store, &logger).map_err(raft_err)?;
    Ok(Box::new(DistriRaftNode {
        raw,
        poisoned: false,
        last_error: CString::default(),
    }))
}

// Shared by the constructors: null checks, panic capture, the error buffer.
unsafe fn construct<F>(
    config: *const DistriRaftConfig,
    out: *mut *mut DistriRaftNode,
    err: *mut c_char,
    err_len: usize,
    build: F,
) -> i32
where
    F: FnOnce(&DistriRaftConfig) -> CResult<Box<DistriRaftNode>>,
{
    if config.is_null() || out.is_null() {
        write_error(err, err_len, "null config or out");
        return ERR_INVALID_ARGUMENT;
    }
    *out = ptr::null_mut();
    let cfg = &*config;
    match catch_unwind(AssertUnwindSafe(|| build(cfg))) {
        Ok(Ok(node)) => {
            *out = Box::into_raw(node);
            OK
        }
        Ok(Err((code, text))) => {
            write_error(err, err_len, &text);
            code
        }
        Err(payload) => {
            write_error(err, err_len, &panic_text(payload));
            ERR_PANIC
        }
    }
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_node_new(
    config: *const DistriRaftConfig,
    out: *mut *mut DistriRaftNode,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    construct(config, out, err, err_len, |cfg| {
        let voters = ids_in(cfg.voters, cfg.voters_len)?;
        let learners = ids_in(cfg.learners, cfg.learners_len)?;
        if voters.is_empty() && !learners.is_empty() {
            return Err(invalid("learners given without voters"));
        }
        let c = raft_config(cfg)?;
        let mut store = Store {
            mem: MemStorage::new(),
            snapshot: Snapshot::default(),
            snapshot_requested: Cell::new(false),
        };
        if !voters.is_empty() {
            // Bootstrap: the initial membership is a snapshot at index 1 (empty state machine),
            // so the log starts at 2. A joining node (no voters) has last index 0, which the
            // leader can only fill with a snapshot, so it always learns the membership from
            // one and never replays entries against an empty configuration.
            let mut snap = Snapshot::default();
            let meta = snap.mut_metadata();
            meta.index = BOOTSTRAP_INDEX;
            meta.term = BOOTSTRAP_TERM;
            meta.set_conf_state(ConfState::from((voters, learners)));
            store
                .mem
                .wl()
                .apply_snapshot(snap.clone())
                .map_err(raft_err)?;
            store.snapshot = snap;
        }
        new_raw_node(&c, store)
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_node_restore(
    config: *const DistriRaftConfig,
    state: *const DistriRaftRestoreState,
    out: *mut *mut DistriRaftNode,
    err: *mut c_char,
    err_len: usize,
) -> i32 {
    if state.is_null() {
        if !out.is_null() {
            *out = ptr::null_mut();
        }
        write_error(err, err_len, "null restore state");
        return ERR_INVALID_ARGUMENT;
    }
    construct(config, out, err, err_len, |cfg| {
        if cfg.voters_len != 0 || cfg.learners_len != 0 {
            return Err(invalid(
                "restore takes the membership from the snapshot metadata: config voters and \
                 learners must be empty",
            ));
        }
        let c = raft_config(cfg)?;
        let restored = restore::restore(&*state, cfg.applied)?;
        let mut node = new_raw_node(&c, restored.store)?;
        for e in &restored.applied_conf_changes {
            apply_conf_change_entry(&mut node.raw, e.get_entry_type() as i32, &e.data)
                .map_err(|(code, text)| (code, format!("entry {}: {text}", e.index)))?;
        }
        Ok(node)
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_node_free(node: *mut DistriRaftNode) {
    if !node.is_null() {
        // Dropping raft state cannot reasonably panic; if it did, abort rather than unwind.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(node))));
    }
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_node_last_error(node: *const DistriRaftNode) -> *const c_char {
    match node.as_ref() {
        Some(n) => n.last_error.as_ptr(),
        None => c"null node".as_ptr(),
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs: time, messages, proposals
// ---------------------------------------------------------------------------------------------

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_tick(node: *mut DistriRaftNode) -> i32 {
    with_node(node, |n| {
        n.raw.tick();
        Ok(())
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_step(
    node: *mut DistriRaftNode,
    data: *const u8,
    len: usize,
) -> i32 {
    with_node(node, |n| {
        let bytes = bytes_in(data, len)?;
        let msg = Message::parse_from_bytes(bytes).map_err(|e| {
            (
                ERR_INVALID_ARGUMENT,
                format!("undecodable raft message: {e}"),
            )
        })?;
        n.raw.step(msg).map_err(raft_err)
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_message_snapshot(
    data: *const u8,
    len: usize,
    index: *mut u64,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> i32 {
    if index.is_null() || out_len.is_null() || (cap != 0 && out.is_null()) {
        return ERR_INVALID_ARGUMENT;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| -> i32 {
        let bytes = match bytes_in(data, len) {
            Ok(b) => b,
            Err((code, _)) => return code,
        };
        let msg = match Message::parse_from_bytes(bytes) {
            Ok(m) => m,
            Err(_) => return ERR_INVALID_ARGUMENT,
        };
        if msg.get_msg_type() != MessageType::MsgSnapshot {
            return ERR_INVALID_ARGUMENT;
        }
        let snap = msg.get_snapshot();
        let snap_data = snap.get_data();
        *index = snap.get_metadata().index;
        *out_len = snap_data.len();
        if snap_data.len() > cap {
            return ERR_INVALID_ARGUMENT;
        }
        if !snap_data.is_empty() {
            ptr::copy_nonoverlapping(snap_data.as_ptr(), out, snap_data.len());
        }
        OK
    }));
    outcome.unwrap_or(ERR_PANIC)
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_propose(
    node: *mut DistriRaftNode,
    context: *const u8,
    context_len: usize,
    data: *const u8,
    data_len: usize,
) -> i32 {
    with_node(node, |n| {
        let ctx = bytes_in(context, context_len)?.to_vec();
        let bytes = bytes_in(data, data_len)?.to_vec();
        n.raw.propose(ctx, bytes).map_err(raft_err)
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_propose_conf_change(
    node: *mut DistriRaftNode,
    context: *const u8,
    context_len: usize,
    changes: *const DistriRaftConfChange,
    changes_len: usize,
) -> i32 {
    with_node(node, |n| {
        let ctx = bytes_in(context, context_len)?.to_vec();
        if changes.is_null() || changes_len == 0 {
            return Err(invalid("no conf change given"));
        }
        let mut cc = ConfChangeV2::default();
        for c in slice::from_raw_parts(changes, changes_len) {
            let ty = match c.change_type {
                0 => ConfChangeType::AddNode,
                1 => ConfChangeType::RemoveNode,
                2 => ConfChangeType::AddLearnerNode,
                _ => return Err(invalid("unknown conf change type")),
            };
            let mut single = ConfChangeSingle {
                node_id: c.node_id,
                ..Default::default()
            };
            single.set_change_type(ty);
            cc.mut_changes().push(single);
        }
        // raft turns a change proposed while an earlier one is unapplied into an empty entry
        // and still answers Ok; refuse it here so the caller can say "retry" instead of "done".
        if n.raw.raft.has_pending_conf() {
            return Err((
                ERR_PROPOSAL_DROPPED,
                "another membership change is not applied yet".to_string(),
            ));
        }
        n.raw.propose_conf_change(ctx, cc).map_err(raft_err)
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_apply_conf_change(
    node: *mut DistriRaftNode,
    entry_type: i32,
    data: *const u8,
    len: usize,
) -> i32 {
    with_node(node, |n| {
        let bytes = bytes_in(data, len)?;
        apply_conf_change_entry(&mut n.raw, entry_type, bytes)
    })
}

// Applies one committed conf change entry to raft and to the stored conf state, which goes
// into the next snapshot this node serves.
fn apply_conf_change_entry(raw: &mut RawNode<Store>, entry_type: i32, bytes: &[u8]) -> CResult<()> {
    let cs = if entry_type == EntryType::EntryConfChange as i32 {
        let cc = ConfChange::parse_from_bytes(bytes).map_err(|e| {
            (
                ERR_INVALID_ARGUMENT,
                format!("undecodable conf change: {e}"),
            )
        })?;
        raw.apply_conf_change(&cc).map_err(raft_err)?
    } else if entry_type == EntryType::EntryConfChangeV2 as i32 {
        let cc = ConfChangeV2::parse_from_bytes(bytes).map_err(|e| {
            (
                ERR_INVALID_ARGUMENT,
                format!("undecodable conf change: {e}"),
            )
        })?;
        raw.apply_conf_change(&cc).map_err(raft_err)?
    } else {
        return Err(invalid("entry is not a conf change"));
    };
    raw.mut_store().mem.wl().set_conf_state(cs);
    Ok(())
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_read_index(
    node: *mut DistriRaftNode,
    context: *const u8,
    context_len: usize,
) -> i32 {
    with_node(node, |n| {
        let ctx = bytes_in(context, context_len)?.to_vec();
        n.raw.read_index(ctx);
        Ok(())
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_transfer_leader(node: *mut DistriRaftNode, to: u64) -> i32 {
    with_node(node, |n| {
        n.raw.transfer_leader(to);
        Ok(())
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_campaign(node: *mut DistriRaftNode) -> i32 {
    with_node(node, |n| n.raw.campaign().map_err(raft_err))
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_report_unreachable(node: *mut DistriRaftNode, id: u64) -> i32 {
    with_node(node, |n| {
        n.raw.report_unreachable(id);
        Ok(())
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_report_snapshot(
    node: *mut DistriRaftNode,
    id: u64,
    failed: u8,
) -> i32 {
    with_node(node, |n| {
        let status = if failed != 0 {
            SnapshotStatus::Failure
        } else {
            SnapshotStatus::Finish
        };
        n.raw.report_snapshot(id, status);
        Ok(())
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_compact(
    node: *mut DistriRaftNode,
    index: u64,
    data: *const u8,
    len: usize,
) -> i32 {
    with_node(node, |n| {
        let bytes = bytes_in(data, len)?;
        if index == 0 || index > n.raw.raft.raft_log.applied {
            return Err(invalid("compaction index must be applied and non-zero"));
        }
        let store = n.raw.mut_store();
        // Older than the snapshot kept, or than the one the log starts after (a restored node
        // knows only the metadata of that one): nothing to do. The same index as a restored
        // snapshot is not older: it gives that snapshot the data the node can serve.
        let log_start = store.mem.first_index().map_err(raft_err)? - 1;
        let kept = store.snapshot.get_metadata().index;
        if index == kept && !store.snapshot.is_empty() {
            // The same state written again (a newer checkpoint at the same applied index
            // replaced the old file): the kept snapshot takes the new data.
            store.snapshot.set_data(bytes.to_vec().into());
            return Ok(());
        }
        if index <= kept || index < log_start {
            return Ok(());
        }
        let term = store.mem.term(index).map_err(raft_err)?;
        let mut snap = Snapshot::default();
        snap.set_data(bytes.to_vec().into());
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(store.mem.initial_state().map_err(raft_err)?.conf_state);
        // compact(index) keeps the entry at `index`, so its term stays known for matching.
        store.mem.wl().compact(index).map_err(raft_err)?;
        store.snapshot = snap;
        Ok(())
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_take_snapshot_request(node: *mut DistriRaftNode) -> i32 {
    let mut requested = false;
    let rc = with_node(node, |n| {
        requested = n.raw.store().snapshot_requested.replace(false);
        Ok(())
    });
    if rc != OK {
        return -rc;
    }
    requested as i32
}

// ---------------------------------------------------------------------------------------------
// The Ready loop
// ---------------------------------------------------------------------------------------------

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_has_ready(node: *mut DistriRaftNode) -> i32 {
    let mut has = false;
    let rc = with_node(node, |n| {
        has = n.raw.has_ready();
        Ok(())
    });
    if rc != OK {
        return -rc;
    }
    has as i32
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_take_ready(
    node: *mut DistriRaftNode,
    out: *mut *mut DistriRaftReady,
) -> i32 {
    if out.is_null() {
        return ERR_INVALID_ARGUMENT;
    }
    *out = ptr::null_mut();
    with_node(node, |n| {
        let mut rd = n.raw.ready();
        let mut h = DistriRaftReady::new(rd.number());
        h.soft_state = rd.ss().map(|s| DistriRaftSoftState {
            leader_id: s.leader_id,
            role: role_code(s.raft_state),
        });
        let hs: Option<HardState> = rd.hs().cloned();
        h.hard_state = hs.as_ref().map(|s| DistriRaftHardState {
            term: s.term,
            vote: s.vote,
            commit: s.commit,
        });
        h.must_sync = rd.must_sync();
        h.snapshot = rd.snapshot().clone();
        h.add_messages(rd.take_messages(), false)?;
        h.add_messages(rd.take_persisted_messages(), true)?;
        h.entries_owned = rd.take_entries();
        h.entries = entry_views(&h.entries_owned);
        h.set_committed(rd.take_committed_entries());
        h.read_states_owned = rd.take_read_states();
        h.read_states = h
            .read_states_owned
            .iter()
            .map(|r| DistriRaftReadState {
                index: r.index,
                context: r.request_ctx.as_ptr(),
                context_len: r.request_ctx.len(),
            })
            .collect();
        // Raft must be able to read this Ready's state back from storage before advance*.
        let store = n.raw.mut_store();
        if !h.snapshot.is_empty() {
            store
                .mem
                .wl()
                .apply_snapshot(h.snapshot.clone())
                .map_err(raft_err)?;
            store.snapshot = h.snapshot.clone();
        }
        if !h.entries_owned.is_empty() {
            store.mem.wl().append(&h.entries_owned).map_err(raft_err)?;
        }
        if let Some(hs) = hs {
            store.mem.wl().set_hardstate(hs);
        }
        h.ready = Some(rd);
        *out = Box::into_raw(h);
        Ok(())
    })
}

// Shared by advance and advance_append: wraps the LightReady in a handle.
unsafe fn advance_common(
    node: *mut DistriRaftNode,
    ready: *mut DistriRaftReady,
    light_out: *mut *mut DistriRaftReady,
    apply_too: bool,
) -> i32 {
    if ready.is_null() || light_out.is_null() {
        return ERR_INVALID_ARGUMENT;
    }
    *light_out = ptr::null_mut();
    with_node(node, |n| {
        let rd = (*ready)
            .ready
            .take()
            .ok_or_else(|| invalid("ready already advanced"))?;
        let mut light = if apply_too {
            n.raw.advance(rd)
        } else {
            n.raw.advance_append(rd)
        };
        let mut h = DistriRaftReady::new(0);
        if let Some(commit) = light.commit_index() {
            h.commit_index = commit;
            n.raw.mut_store().mem.wl().mut_hard_state().commit = commit;
        }
        h.add_messages(light.take_messages(), false)?;
        h.set_committed(light.take_committed_entries());
        *light_out = Box::into_raw(h);
        Ok(())
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_advance(
    node: *mut DistriRaftNode,
    ready: *mut DistriRaftReady,
    light_out: *mut *mut DistriRaftReady,
) -> i32 {
    advance_common(node, ready, light_out, true)
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_advance_append(
    node: *mut DistriRaftNode,
    ready: *mut DistriRaftReady,
    light_out: *mut *mut DistriRaftReady,
) -> i32 {
    advance_common(node, ready, light_out, false)
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_advance_append_async(
    node: *mut DistriRaftNode,
    ready: *mut DistriRaftReady,
) -> i32 {
    if ready.is_null() {
        return ERR_INVALID_ARGUMENT;
    }
    with_node(node, |n| {
        let rd = (*ready)
            .ready
            .take()
            .ok_or_else(|| invalid("ready already advanced"))?;
        n.raw.advance_append_async(rd);
        Ok(())
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_on_persist_ready(
    node: *mut DistriRaftNode,
    number: u64,
) -> i32 {
    with_node(node, |n| {
        n.raw.on_persist_ready(number);
        Ok(())
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_advance_apply_to(
    node: *mut DistriRaftNode,
    applied: u64,
) -> i32 {
    with_node(node, |n| {
        // raft panics on these; they are caller bugs, so say so instead of poisoning the node.
        let log = &n.raw.raft.raft_log;
        if applied > log.committed || applied > log.persisted {
            return Err(invalid(
                "applied index beyond the commit index or the persisted index",
            ));
        }
        if applied < log.applied {
            return Ok(()); // already reported
        }
        n.raw.advance_apply_to(applied);
        Ok(())
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_ready_free(ready: *mut DistriRaftReady) {
    if !ready.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(ready))));
    }
}

// ---------------------------------------------------------------------------------------------
// Introspection
// ---------------------------------------------------------------------------------------------

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_node_status(
    node: *mut DistriRaftNode,
    out: *mut DistriRaftStatus,
) -> i32 {
    if out.is_null() {
        return ERR_INVALID_ARGUMENT;
    }
    with_node(node, |n| {
        let r = &n.raw.raft;
        *out = DistriRaftStatus {
            id: r.id,
            term: r.term,
            vote: r.vote,
            commit: r.raft_log.committed,
            applied: r.raft_log.applied,
            last_index: r.raft_log.last_index(),
            leader_id: r.leader_id,
            role: role_code(r.state),
        };
        Ok(())
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_node_progress(
    node: *mut DistriRaftNode,
    ids: *mut u64,
    matched: *mut u64,
    cap: usize,
    len: *mut usize,
) -> i32 {
    if len.is_null() || (cap != 0 && (ids.is_null() || matched.is_null())) {
        return ERR_INVALID_ARGUMENT;
    }
    with_node(node, |n| {
        let mut all: Vec<(u64, u64)> = n
            .raw
            .raft
            .prs()
            .iter()
            .map(|(id, pr)| (*id, pr.matched))
            .collect();
        all.sort_unstable();
        *len = all.len();
        for (i, (id, m)) in all.iter().take(cap).enumerate() {
            *ids.add(i) = *id;
            *matched.add(i) = *m;
        }
        Ok(())
    })
}

/// # Safety
/// See raft_capi.h.
#[no_mangle]
pub unsafe extern "C" fn distri_raft_node_conf_state(
    node: *mut DistriRaftNode,
    learners: i32,
    out: *mut u64,
    cap: usize,
    len: *mut usize,
) -> i32 {
    if len.is_null() || (cap != 0 && out.is_null()) {
        return ERR_INVALID_ARGUMENT;
    }
    with_node(node, |n| {
        let cs = n.raw.raft.prs().conf().to_conf_state();
        let ids = if learners != 0 {
            &cs.learners
        } else {
            &cs.voters
        };
        *len = ids.len();
        for (i, id) in ids.iter().take(cap).enumerate() {
            *out.add(i) = *id;
        }
        Ok(())
    })
}
