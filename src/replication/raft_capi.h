/* raft_capi.h: the C ABI of src/replication/raft_capi, a Rust static library that wraps
 * TiKV's raft crate (raft-rs 0.7). Distri's C++ code uses it only through
 * distri::replication::RaftNode (raft_node.h); docs/replication.md describes the Ready loop
 * contract and why the API looks like this.
 *
 * raft-rs does no I/O: the caller feeds it time (distri_raft_tick), messages from peers
 * (distri_raft_step) and proposals, and then runs the Ready loop: take a Ready, send its
 * messages, persist its entries / hard state / snapshot, apply its committed entries, and tell
 * raft what has been persisted and applied (advance*, on_persist_ready, advance_apply_to).
 *
 * Threading: a node is NOT thread-safe. Create, drive and free each node on one thread (the
 * loop thread); distinct nodes may live on distinct threads. Ready handles belong to the
 * thread of their node.
 *
 * Errors: functions returning int return DISTRI_RAFT_OK (0) or one of the DISTRI_RAFT_ERR_*
 * codes; distri_raft_node_last_error() then describes the failure. No Rust panic crosses this
 * boundary: a panic inside raft is caught, reported as DISTRI_RAFT_ERR_PANIC, and poisons the
 * node (every later call returns DISTRI_RAFT_ERR_POISONED; the caller must stop the node).
 *
 * Ownership:
 *  - Every pointer passed in is borrowed for the duration of the call; its bytes are copied.
 *    (NULL, 0) is a valid empty buffer.
 *  - A node is owned by the caller from distri_raft_node_new (or _restore) until
 *    distri_raft_node_free.
 *  - A ready handle (from distri_raft_take_ready, distri_raft_advance or
 *    distri_raft_advance_append) is owned by the caller until distri_raft_ready_free. Every
 *    pointer read out of it (message bytes, entry data, read state contexts, snapshot data and
 *    id lists) points into the handle and stays valid until the handle is freed, also after
 *    the handle was passed to advance*.
 *  - A ready handle must be freed before its node.
 *
 * Storage: the node keeps raft's log in memory (raft-rs MemStorage) plus the newest
 * state-machine snapshot given to distri_raft_compact. distri_raft_take_ready copies the
 * Ready's snapshot, entries and hard state into that store; the caller makes them durable.
 * After a restart, distri_raft_node_restore rebuilds the node from what the caller persisted
 * (hard state, snapshot metadata, the entries after the snapshot); the snapshot's data stays
 * with the caller, which hands it back through distri_raft_compact when raft asks for it
 * (distri_raft_take_snapshot_request). */

#ifndef DISTRI_REPLICATION_RAFT_CAPI_H_
#define DISTRI_REPLICATION_RAFT_CAPI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */
#define DISTRI_RAFT_OK 0
#define DISTRI_RAFT_ERR_INVALID_ARGUMENT 1 /* bad config, null pointer, undecodable bytes */
#define DISTRI_RAFT_ERR_PROPOSAL_DROPPED 2 /* no leader known, leadership transfer, ... */
#define DISTRI_RAFT_ERR_RAFT 3             /* any other error raft reports */
#define DISTRI_RAFT_ERR_PANIC 4            /* raft panicked; the node is now poisoned */
#define DISTRI_RAFT_ERR_POISONED 5         /* an earlier call panicked; stop this node */

/* Index of the bootstrap snapshot that holds a new group's initial membership. */
#define DISTRI_RAFT_BOOTSTRAP_INDEX 1

/* Roles (raft-rs StateRole). */
#define DISTRI_RAFT_ROLE_FOLLOWER 0
#define DISTRI_RAFT_ROLE_CANDIDATE 1
#define DISTRI_RAFT_ROLE_LEADER 2
#define DISTRI_RAFT_ROLE_PRE_CANDIDATE 3

/* distri_raft_message.msg_type of a snapshot (eraftpb MsgSnapshot): the transport must
 * report its delivery or loss with distri_raft_report_snapshot, or raft stops sending to that
 * follower until it hears back. */
#define DISTRI_RAFT_MSG_SNAPSHOT 7

/* Entry types (eraftpb EntryType). */
#define DISTRI_RAFT_ENTRY_NORMAL 0
#define DISTRI_RAFT_ENTRY_CONF_CHANGE 1
#define DISTRI_RAFT_ENTRY_CONF_CHANGE_V2 2

/* Conf change kinds (eraftpb ConfChangeType). */
#define DISTRI_RAFT_ADD_VOTER 0   /* also promotes an existing learner */
#define DISTRI_RAFT_REMOVE_NODE 1
#define DISTRI_RAFT_ADD_LEARNER 2

typedef struct distri_raft_node distri_raft_node;
typedef struct distri_raft_ready distri_raft_ready;

typedef struct {
  uint64_t id;               /* this node; non-zero, unique in the group */
  const uint64_t* voters;    /* initial voters; none: a joining node; none for _restore */
  size_t voters_len;
  const uint64_t* learners;  /* initial learners */
  size_t learners_len;
  uint32_t election_tick;    /* ticks without a leader before campaigning (randomised up to 2x) */
  uint32_t heartbeat_tick;   /* ticks between leader heartbeats; < election_tick */
  uint64_t applied;          /* last index already applied to the state machine (0: none) */
  uint64_t max_size_per_msg; /* bytes of entries per append message; 0: raft's default */
  uint64_t max_inflight_msgs; /* unacknowledged appends per follower; 0: raft's default */
  uint8_t check_quorum;      /* leader steps down without a quorum of recent contact */
  uint8_t pre_vote;          /* pre-vote before campaigning (a rejoining node cannot disrupt) */
} distri_raft_config;

/* An outbound message: send `data` (a serialised eraftpb.Message) to node `to`, which passes
 * the bytes to distri_raft_step. `msg_type` is eraftpb MessageType, for logs and metrics. */
typedef struct {
  uint64_t to;
  int32_t msg_type;
  const uint8_t* data;
  size_t len;
} distri_raft_message;

typedef struct {
  uint64_t index;
  uint64_t term;
  int32_t entry_type; /* DISTRI_RAFT_ENTRY_* */
  const uint8_t* data;
  size_t data_len;
  const uint8_t* context; /* the context given to propose (empty for raft's own entries) */
  size_t context_len;
} distri_raft_entry;

typedef struct {
  uint64_t term;
  uint64_t vote;
  uint64_t commit;
} distri_raft_hard_state;

/* What a restarting node persisted (distri_raft_node_restore). Everything is borrowed for the
 * call and copied. */
typedef struct {
  distri_raft_hard_state hard_state; /* the newest persisted hard state */
  /* The newest snapshot: the bootstrap one (index 1, term 1), one received from a leader
   * (distri_raft_ready_snapshot) or one given to distri_raft_compact. Index 0 (term 0, no
   * members, no entries): a joining node that never received one. */
  uint64_t snapshot_index;
  uint64_t snapshot_term;
  const uint64_t* voters; /* membership as of snapshot_index */
  size_t voters_len;
  const uint64_t* learners;
  size_t learners_len;
  /* Every persisted entry after the snapshot, in order, from index snapshot_index + 1, with a
   * conflicting tail already overwritten as distri_raft_ready_entries asked. */
  const distri_raft_entry* entries;
  size_t entries_len;
} distri_raft_restore_state;

typedef struct {
  uint64_t leader_id; /* 0: no leader known */
  int32_t role;       /* DISTRI_RAFT_ROLE_* */
} distri_raft_soft_state;

/* Answer to distri_raft_read_index: once the state machine has applied `index`, reads
 * issued before the request with `context` are linearizable. */
typedef struct {
  uint64_t index;
  const uint8_t* context;
  size_t context_len;
} distri_raft_read_state;

typedef struct {
  uint64_t index;
  uint64_t term;
  const uint8_t* data; /* the state-machine snapshot given to distri_raft_compact by the sender */
  size_t data_len;
  const uint64_t* voters; /* membership as of `index` */
  size_t voters_len;
  const uint64_t* learners;
  size_t learners_len;
} distri_raft_snapshot;

typedef struct {
  uint64_t id;
  uint64_t term;
  uint64_t vote;
  uint64_t commit;
  uint64_t applied;
  uint64_t last_index;
  uint64_t leader_id;
  int32_t role;
} distri_raft_status;

typedef struct {
  int32_t change_type; /* DISTRI_RAFT_ADD_VOTER, _REMOVE_NODE or _ADD_LEARNER */
  uint64_t node_id;
} distri_raft_conf_change;

/* ---- lifecycle ---------------------------------------------------------------------------- */

/* Creates a node with an empty log.
 *  - voters given: bootstraps a new group. The initial membership becomes a snapshot at index 1
 *    (term 1) with an empty state machine, so the first entry has index 2. Every founding node
 *    must be created with the same voters and learners.
 *  - no voters (and no learners): a node joining an existing group. It knows no membership and
 *    never campaigns; the leader sends it a snapshot first (the log of every bootstrapped node
 *    starts at 2, so a node at index 0 cannot be caught up by entries alone) and it learns the
 *    membership from that. Add it with a conf change (learner first) before or after creating it.
 * On failure *out is NULL and a NUL-terminated message (truncated to err_len) is written to err
 * when err is not NULL. */
int distri_raft_node_new(const distri_raft_config* config, distri_raft_node** out, char* err,
                         size_t err_len);
/* Creates a node from durable state after a restart. config->voters and ->learners must be
 * empty (the membership comes from the snapshot metadata); config->applied is the index the
 * state machine has applied, in [snapshot_index, hard_state.commit] (the state machine is the
 * snapshot's data plus the entries up to `applied`). Committed entries after `applied` come
 * out of the first Readies again. Conf change entries up to `applied` are re-applied to raft's
 * membership here, since raft will not hand them out again.
 * The node has no snapshot it could send: when a follower needs one, the request comes through
 * distri_raft_take_snapshot_request and the caller answers with distri_raft_compact (an index
 * equal to snapshot_index is fine: it gives that snapshot its data).
 * Refused with DISTRI_RAFT_ERR_INVALID_ARGUMENT (and a message in err, as for _new): entries
 * not contiguous from snapshot_index + 1 or with a decreasing term, a term above
 * hard_state.term, commit outside [snapshot_index, last index], applied outside
 * [snapshot_index, commit], a snapshot without voters or with duplicate or zero ids, members in
 * config, an unknown entry type. */
int distri_raft_node_restore(const distri_raft_config* config,
                             const distri_raft_restore_state* state, distri_raft_node** out,
                             char* err, size_t err_len);
/* Frees the node. NULL is ignored. REQUIRES: every ready handle of the node was freed. */
void distri_raft_node_free(distri_raft_node* node);
/* Text of the last error on this node; owned by the node, valid until its next failing call. */
const char* distri_raft_node_last_error(const distri_raft_node* node);

/* ---- inputs ------------------------------------------------------------------------------- */

/* Advances raft's logical clock by one tick (elections, heartbeats, check-quorum). */
int distri_raft_tick(distri_raft_node* node);
/* Feeds a message received from a peer (bytes produced by a distri_raft_message). A message
 * for an unknown peer or from an old term is not an error raft cares about; undecodable bytes
 * are DISTRI_RAFT_ERR_INVALID_ARGUMENT. */
int distri_raft_step(distri_raft_node* node, const uint8_t* data, size_t len);
/* Reads a serialised MsgSnapshot without a node: the snapshot's index and its data (copied to
 * out, at most cap bytes; *out_len is set to the data's length even when it does not fit, which
 * is then DISTRI_RAFT_ERR_INVALID_ARGUMENT, as are bytes that are not a MsgSnapshot). */
int distri_raft_message_snapshot(const uint8_t* data, size_t len, uint64_t* index, uint8_t* out,
                                 size_t cap, size_t* out_len);
/* Proposes an entry. `context` travels with the entry (distri_raft_entry.context), so the
 * proposer can recognise its own entry when it commits. DISTRI_RAFT_ERR_PROPOSAL_DROPPED when
 * no leader is known or leadership is being transferred: nothing was proposed. Success does
 * not mean the entry will commit (a leader change may drop it): match committed entries by
 * context. */
int distri_raft_propose(distri_raft_node* node, const uint8_t* context, size_t context_len,
                        const uint8_t* data, size_t data_len);
/* Proposes a membership change (one change: simple; several: joint consensus, left
 * automatically). It commits as an entry of type DISTRI_RAFT_ENTRY_CONF_CHANGE_V2, which the
 * caller must pass to distri_raft_apply_conf_change when it applies it. While an earlier
 * change is not yet applied, DISTRI_RAFT_ERR_PROPOSAL_DROPPED (raft itself would silently
 * turn the new one into an empty entry). A change can still be lost with a leader change:
 * confirm it by its committed entry (context) or by distri_raft_node_conf_state. */
int distri_raft_propose_conf_change(distri_raft_node* node, const uint8_t* context,
                                    size_t context_len, const distri_raft_conf_change* changes,
                                    size_t changes_len);
/* Applies a committed conf change entry (its type and data). REQUIRES: entries before it have
 * been applied; called in index order on every node. */
int distri_raft_apply_conf_change(distri_raft_node* node, int32_t entry_type,
                                  const uint8_t* data, size_t len);
/* Asks for a linearizable read point; the answer arrives as a distri_raft_read_state with the
 * same context in a later Ready, after a quorum confirmed this leader (ReadOnlyOption::Safe).
 * No answer comes if leadership is lost: the caller times the request out. */
int distri_raft_read_index(distri_raft_node* node, const uint8_t* context, size_t context_len);
/* Asks the leader (this node) to hand leadership to `to`. */
int distri_raft_transfer_leader(distri_raft_node* node, uint64_t to);
/* Starts an election now (tests; a lone voter bootstrapping). */
int distri_raft_campaign(distri_raft_node* node);
/* The transport could not deliver to `id`: raft slows down sending to it. */
int distri_raft_report_unreachable(distri_raft_node* node, uint64_t id);
/* The snapshot sent to `id` was delivered (failed = 0) or not (failed = 1). */
int distri_raft_report_snapshot(distri_raft_node* node, uint64_t id, uint8_t failed);
/* The state machine snapshot `data` covers every entry up to `index`: keep it as the snapshot
 * to send to lagging followers and drop the in-memory log before `index`. At the index of the
 * snapshot already kept, `data` replaces its data (the same state, written again); older
 * indexes change nothing.
 * REQUIRES: index is applied (distri_raft_advance_apply_to) and the membership given to
 * distri_raft_apply_conf_change is the one as of `index`. */
int distri_raft_compact(distri_raft_node* node, uint64_t index, const uint8_t* data, size_t len);

/* 1 if, since the last call, raft needed a snapshot the node does not have (a follower, e.g.
 * a new learner, is behind the compacted log and the kept snapshot is older than it needs or
 * predates its membership); 0 if not; minus an error code. The caller answers by snapshotting
 * its state machine at the applied index and passing it to distri_raft_compact; raft retries
 * sending on its own. */
int distri_raft_take_snapshot_request(distri_raft_node* node);

/* ---- the Ready loop ----------------------------------------------------------------------- */

/* 1 if a Ready is pending, 0 if not, or minus an error code. */
int distri_raft_has_ready(distri_raft_node* node);
/* Takes the pending Ready. REQUIRES: distri_raft_has_ready() == 1, and no step / propose /
 * tick between this call and passing the handle to an advance function. On success *out is a
 * new handle the caller frees with distri_raft_ready_free (after advancing it). */
int distri_raft_take_ready(distri_raft_node* node, distri_raft_ready** out);
/* Synchronous pattern: everything in `ready` is persisted, sent and applied. Returns in
 * *light_out a new handle with only a commit index, messages and committed entries, which the
 * caller must also send and apply, and free. */
int distri_raft_advance(distri_raft_node* node, distri_raft_ready* ready,
                        distri_raft_ready** light_out);
/* As distri_raft_advance, but committed entries are not yet applied: report applying with
 * distri_raft_advance_apply_to. */
int distri_raft_advance_append(distri_raft_node* node, distri_raft_ready* ready,
                               distri_raft_ready** light_out);
/* Asynchronous pattern (what Distri uses): hands the Ready back right after sending its
 * messages and starting to persist it; persistence is reported later, in order, with
 * distri_raft_on_persist_ready(number of the newest persisted ready). The handle stays
 * readable: send its persisted messages only after the persist finished. */
int distri_raft_advance_append_async(distri_raft_node* node, distri_raft_ready* ready);
/* Every Ready up to `number` (distri_raft_ready_number) is durable. */
int distri_raft_on_persist_ready(distri_raft_node* node, uint64_t number);
/* The state machine has applied every committed entry up to `applied`. REQUIRES: applied is
 * durable too (after a Ready with a snapshot, report the snapshot's index only once that
 * Ready was passed to distri_raft_on_persist_ready); DISTRI_RAFT_ERR_INVALID_ARGUMENT if not. */
int distri_raft_advance_apply_to(distri_raft_node* node, uint64_t applied);
/* Frees a ready handle. NULL is ignored. */
void distri_raft_ready_free(distri_raft_ready* ready);

/* ---- reading a ready handle (valid until distri_raft_ready_free) -------------------------- */

/* The Ready's number, for distri_raft_on_persist_ready (0 for the result of advance*). */
uint64_t distri_raft_ready_number(const distri_raft_ready* ready);
/* 1 if the entries / hard state / snapshot must be fsynced before on_persist_ready. */
int distri_raft_ready_must_sync(const distri_raft_ready* ready);
/* The new commit index reported by advance* (0: unchanged). */
uint64_t distri_raft_ready_commit_index(const distri_raft_ready* ready);
/* 1 and *out filled if leader or role changed; 0 otherwise. */
int distri_raft_ready_soft_state(const distri_raft_ready* ready, distri_raft_soft_state* out);
/* 1 and *out filled if the hard state changed (persist it); 0 otherwise. */
int distri_raft_ready_hard_state(const distri_raft_ready* ready, distri_raft_hard_state* out);
/* 1 and *out filled if a snapshot from the leader must be persisted and loaded into the state
 * machine (it replaces the state and every entry up to its index); 0 otherwise. */
int distri_raft_ready_snapshot(const distri_raft_ready* ready, distri_raft_snapshot* out);
/* Messages to send now (persisted = 0), or only after this Ready is durable (persisted = 1:
 * votes and append responses must not promise what a crash could forget). */
const distri_raft_message* distri_raft_ready_messages(const distri_raft_ready* ready,
                                                      int persisted, size_t* len);
/* Entries to append to the durable log (they may overwrite a conflicting tail). */
const distri_raft_entry* distri_raft_ready_entries(const distri_raft_ready* ready, size_t* len);
/* Entries committed by a quorum, to apply in order. */
const distri_raft_entry* distri_raft_ready_committed_entries(const distri_raft_ready* ready,
                                                             size_t* len);
/* Answers to distri_raft_read_index. */
const distri_raft_read_state* distri_raft_ready_read_states(const distri_raft_ready* ready,
                                                            size_t* len);

/* ---- introspection ------------------------------------------------------------------------ */

int distri_raft_node_status(distri_raft_node* node, distri_raft_status* out);
/* Copies up to `cap` ids of the current voters (learners = 0) or learners (learners = 1) to
 * out and sets *len to their total number. */
/* The leader's view of replication: for each member (ascending id) the highest index known
 * to be in its log. Copies up to `cap` pairs and sets *len to the number of members. Only the
 * leader's figures are meaningful (a follower's tracker is stale). */
int distri_raft_node_progress(distri_raft_node* node, uint64_t* ids, uint64_t* matched,
                              size_t cap, size_t* len);
int distri_raft_node_conf_state(distri_raft_node* node, int learners, uint64_t* out, size_t cap,
                                size_t* len);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // DISTRI_REPLICATION_RAFT_CAPI_H_
