// RaftLog: the Ready loop, the write-ahead log and recovery; see raft_log.h and
// docs/replication.md ("The Ready loop as Distri drives it").

#include "replication/raft_log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/endian.h"
#include "base/failpoint.h"
#include "base/logging.h"
#include "log/segment.h"

#include <openssl/rand.h>

namespace distri::replication {

namespace {

// Entry contexts: what a committed entry says about where it came from.
constexpr char kProposalContext = 1;  // origin u64 | seq u64
constexpr char kMemberContext = 2;    // address (of an added node)

struct ProposalId {
  uint64_t origin = 0;
  uint64_t seq = 0;
};

std::optional<ProposalId> ParseContext(std::string_view ctx) {
  if (ctx.size() != 17 || ctx[0] != kProposalContext) return std::nullopt;
  return ProposalId{base::GetLe64(ctx.data() + 1), base::GetLe64(ctx.data() + 9)};
}

StoredEntry Own(const RaftEntry& e) {
  return StoredEntry{e.index, e.term, e.type, std::string(e.data), std::string(e.context)};
}

std::string MemberContext(uint64_t id, std::string_view address) {
  std::string ctx(1, kMemberContext);
  base::AppendLe64(&ctx, id);
  ctx.append(address);
  return ctx;
}

}  // namespace

RaftLog::RaftLog(uv_loop_t* loop, const RaftLogOptions& options, RaftLogHooks hooks)
    : loop_(loop), options_(options), hooks_(std::move(hooks)) {
  // Proposal ids must not repeat across restarts: an entry proposed before a crash may still
  // commit afterwards and would be taken for a new proposal with the same id. Each
  // incarnation starts at a random point of the 64-bit space (ids are never 0).
  uint64_t start = 0;
  CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(&start), sizeof start) == 1)
      << "RAND_bytes failed";
  next_seq_ = (start >> 1) | 1;  // leaves 2^63 ids before wrapping
}

RaftLog::~RaftLog() { Close(); }

void RaftLog::Close() {
  if (closed_) return;
  closed_ = true;
  if (tick_timer_ != nullptr) {
    uv_timer_stop(tick_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(tick_timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    tick_timer_ = nullptr;
  }
  if (wal_) wal_->Close();
}

std::string RaftLog::Context(uint64_t origin, uint64_t seq) const {
  std::string ctx(1, kProposalContext);
  base::AppendLe64(&ctx, origin);
  base::AppendLe64(&ctx, seq);
  return ctx;
}

void RaftLog::Fatal(const Status& why) {
  // Raft has moved on assuming its state was persisted (or its engine is poisoned): this
  // node can only stop. The other voters keep the cluster going; a restart recovers from
  // the durable state.
  LOG(FATAL) << "raft: " << why.ToString() << "; stopping this node";
}

// ---------------------------------------------------------------------------
// Opening and recovery

Result<std::unique_ptr<RaftLog>> RaftLog::Open(uv_loop_t* loop, const RaftLogOptions& options,
                                               RaftLogHooks hooks) {
  if (options.node_id == 0) return Status::InvalidArgument("raft node id must be non-zero");
  std::unique_ptr<RaftLog> log(new RaftLog(loop, options, std::move(hooks)));
  DISTRI_RETURN_IF_ERROR(log->Recover());
  log->tick_timer_ = new uv_timer_t;
  uv_timer_init(loop, log->tick_timer_);
  log->tick_timer_->data = log.get();
  uv_timer_start(log->tick_timer_, OnTick, options.tick_ms, options.tick_ms);
  return log;
}

Status RaftLog::Recover() {
  RaftDurableState durable;
  std::string checkpoint_payload;
  log::LocalLogOptions wal_options;
  wal_options.dir = options_.dir;
  wal_options.fsync = options_.fsync;
  wal_options.segment_bytes = options_.segment_bytes;
  auto opened = log::LocalLog::Open(
      wal_options,
      [&](uint64_t seq, std::string_view data) {
        std::string_view payload;
        DISTRI_RETURN_IF_ERROR(durable.ApplyCheckpoint(data, &payload));
        checkpoint_payload.assign(payload);
        last_checkpoint_seq_ = seq;
        return Status::Ok();
      },
      [&](uint64_t seq, std::string_view record) {
        wal_proposed_ = seq;
        return durable.ApplyRecord(record);
      });
  if (!opened.ok()) return opened.status();
  wal_ = std::move(opened).value();
  wal_proposed_ = wal_->last_index();
  wal_durable_ = wal_proposed_;

  // The state machine: from the newest snapshot (one received from a leader, or the
  // checkpoint's), with the membership addresses it carries.
  std::string received;
  if (durable.snapshot_from_record) {
    auto loaded = SnapshotPayload(durable.snapshot_data);
    if (!loaded.ok()) return loaded.status();
    received = std::move(loaded).value();
    uint64_t ref = 0, size = 0;
    if (DecodeSnapshotRef(durable.snapshot_data, &ref, &size)) {
      received_in_use_ = ref;
      received_record_ = wal_proposed_;  // conservatively: the newest record
    }
  }
  std::string_view payload = durable.snapshot_from_record ? std::string_view(received)
                                                          : std::string_view(checkpoint_payload);
  if (!payload.empty()) {
    auto decoded = DecodePayload(payload);
    if (!decoded.ok()) return decoded.status();
    members_ = decoded.value().members;
    DISTRI_RETURN_IF_ERROR(hooks_.load_state(decoded.value().state_index, decoded.value().state));
  }
  if (!options_.address.empty()) members_[options_.node_id] = options_.address;

  RaftConfig config;
  config.id = options_.node_id;
  config.election_tick = options_.election_tick;
  config.heartbeat_tick = options_.heartbeat_tick;
  config.max_size_per_msg = options_.max_size_per_msg;
  config.max_inflight_msgs = options_.max_inflight_msgs;
  const bool fresh = !durable.has_hard_state && durable.snapshot.index == 0 &&
                     durable.entries.empty();
  if (fresh) {
    if (options_.bootstrap) {
      config.voters = {options_.node_id};
      config.applied = kBootstrapIndex;
    }
    auto node = RaftNode::Create(config);
    if (!node.ok()) return node.status();
    node_ = std::move(node).value();
    if (options_.bootstrap) {
      // The bootstrap membership must survive a restart before anything else is written.
      SnapshotMeta meta{kBootstrapIndex, 1, {options_.node_id}, {}};
      std::string record;
      EncodeRecord(&record, HardState{1, 0, kBootstrapIndex}, &meta, {}, {});
      auto seq = wal_->Propose(record);
      if (!seq.ok()) return seq.status();
      wal_proposed_ = seq.value();
      wal_->Flush();
      applied_ = kBootstrapIndex;
      applied_term_ = 1;
      hard_state_ = HardState{1, 0, kBootstrapIndex};
    }
  } else {
    RestoreState restore;
    restore.hard_state = durable.hard_state;
    // A checkpoint may carry a commit index ahead of the entries that were durable with it
    // (the commit index need not be durable: raft learns it again from the leader).
    const uint64_t last = durable.entries.empty() ? durable.snapshot.index
                                                  : durable.entries.back().index;
    restore.hard_state.commit =
        std::clamp(restore.hard_state.commit, durable.snapshot.index, last);
    restore.snapshot_index = durable.snapshot.index;
    restore.snapshot_term = durable.snapshot.term;
    restore.voters = durable.snapshot.voters;
    restore.learners = durable.snapshot.learners;
    restore.entries = durable.entries;  // the same type
    config.applied = durable.snapshot.index;
    auto node = RaftNode::Restore(config, restore);
    if (!node.ok()) return node.status();
    node_ = std::move(node).value();
    applied_ = durable.snapshot.index;
    applied_term_ = durable.snapshot.term;
    hard_state_ = durable.hard_state;
    tail_.assign(std::make_move_iterator(durable.entries.begin()),
                 std::make_move_iterator(durable.entries.end()));
  }
  reported_applied_ = applied_;
  last_index_ = tail_.empty() ? applied_ : tail_.back().index;
  LOG(INFO) << "raft: node " << options_.node_id << " recovered term " << hard_state_.term
            << ", commit " << hard_state_.commit << ", snapshot at " << applied_ << ", "
            << tail_.size() << " entries after it"
            << (fresh ? (options_.bootstrap ? " (new cluster of one)" : " (joining)") : "");
  return Status::Ok();
}

void RaftLog::SetWakeup(std::function<void()> wake) {
  wake_ = wake;
  wal_->SetWakeup(std::move(wake));
}

// ---------------------------------------------------------------------------
// Inputs

void RaftLog::OnTick(uv_timer_t* timer) {
  auto* self = static_cast<RaftLog*>(timer->data);
  Status st = self->node_->Tick();
  if (!st.ok()) self->Fatal(st);
  self->ProcessReadies();
}

Result<uint64_t> RaftLog::Propose(std::string_view entry) {
  if (role_ != Role::kLeader) return Status(Code::kBusy, "not the leader");
  const uint64_t seq = next_seq_++;
  auto index = ProposeFor(options_.node_id, seq, entry);
  if (!index.ok()) return index.status();
  expected_[index.value()] = seq;
  return seq;
}

Result<uint64_t> RaftLog::ProposeFor(uint64_t origin, uint64_t seq, std::string_view entry) {
  // role_ is as of the last Ready; a message stepped since may have demoted this node, and
  // raft-rs would then pass the proposal on to the new leader (it has no switch to refuse),
  // leaving us without its index. Ask raft itself.
  auto before = node_->GetStatus();
  if (!before.ok()) return before.status();
  if (role_ != Role::kLeader || before.value().role != Role::kLeader) {
    return Status(Code::kBusy, "not the leader");
  }
  DISTRI_RETURN_IF_ERROR(node_->Propose(Context(origin, seq), entry));
  auto after = node_->GetStatus();
  if (!after.ok()) return after.status();
  proposals_++;
  if (after.value().last_index != before.value().last_index + 1) {
    return Status::Internal("raft appended " +
                            std::to_string(after.value().last_index - before.value().last_index) +
                            " entries for one proposal");
  }
  return after.value().last_index;
}

void RaftLog::ExpectAt(uint64_t index, uint64_t seq) {
  if (index <= applied_) {
    // It committed before the leader's answer came; had it been ours, Poll would have
    // delivered it: another entry took the index.
    lost_.push_back({seq, index});
    if (wake_) wake_();
    return;
  }
  expected_[index] = seq;
}

Status RaftLog::Step(std::string_view message) {
  Status st = node_->Step(message);
  // A malformed or stale message is the peer's problem; a poisoned node is ours.
  if (!st.ok() && st.code() == Code::kInternal) Fatal(st);
  return st;
}

Status RaftLog::ReadIndex(uint64_t ctx) {
  // The leader keys pending reads by context, for every node's reads together: a context
  // must be unique in the cluster, so it names this node.
  std::string bytes;
  base::AppendLe64(&bytes, options_.node_id);
  base::AppendLe64(&bytes, ctx);
  return node_->ReadIndex(bytes);
}

Status RaftLog::AddLearner(uint64_t id, const std::string& address) {
  if (role_ != Role::kLeader) return Status(Code::kBusy, "not the leader");
  ConfChange change{ConfChangeType::kAddLearner, id};
  return node_->ProposeConfChange(MemberContext(id, address), {&change, 1});
}

Status RaftLog::Promote(uint64_t id) {
  if (role_ != Role::kLeader) return Status(Code::kBusy, "not the leader");
  ConfChange change{ConfChangeType::kAddVoter, id};
  auto it = members_.find(id);
  return node_->ProposeConfChange(MemberContext(id, it == members_.end() ? "" : it->second),
                                  {&change, 1});
}

Status RaftLog::Remove(uint64_t id) {
  if (role_ != Role::kLeader) return Status(Code::kBusy, "not the leader");
  ConfChange change{ConfChangeType::kRemoveNode, id};
  Status st = node_->ProposeConfChange("", {&change, 1});
  if (st.code() == Code::kBusy) {
    return Status(Code::kBusy, "TRYAGAIN another membership change is still being applied; retry");
  }
  return st;
}

Status RaftLog::TransferLeader(uint64_t id) { return node_->TransferLeader(id); }

void RaftLog::ReportUnreachable(uint64_t id) { (void)node_->ReportUnreachable(id); }

void RaftLog::ReportSnapshot(uint64_t id, bool delivered) {
  (void)node_->ReportSnapshot(id, delivered);
}

std::vector<std::pair<uint64_t, uint64_t>> RaftLog::Progress() const {
  if (role_ != Role::kLeader) return {};
  auto progress = node_->Progress();
  return progress.ok() ? progress.value() : std::vector<std::pair<uint64_t, uint64_t>>{};
}

bool RaftLog::IsVoter(uint64_t id) const {
  auto voters = node_->Voters();
  return voters.ok() && std::ranges::find(voters.value(), id) != voters.value().end();
}

bool RaftLog::IsLearner(uint64_t id) const {
  auto learners = node_->Learners();
  return learners.ok() && std::ranges::find(learners.value(), id) != learners.value().end();
}

std::vector<MemberInfo> RaftLog::Members() const {
  std::vector<MemberInfo> out;
  auto voters = node_->Voters();
  auto learners = node_->Learners();
  auto add = [&](uint64_t id, bool voter) {
    auto it = members_.find(id);
    out.push_back({id, it == members_.end() ? std::string() : it->second, voter});
  };
  if (voters.ok()) for (uint64_t id : voters.value()) add(id, true);
  if (learners.ok()) for (uint64_t id : learners.value()) add(id, false);
  return out;
}

// ---------------------------------------------------------------------------
// The Ready loop

void RaftLog::Flush() {
  if (closed_) return;
  ProcessReadies();
  wal_->Flush();
}

void RaftLog::ProcessReadies() {
  if (closed_) return;
  bool any = false;
  for (;;) {
    auto has = node_->HasReady();
    if (!has.ok()) return Fatal(has.status());
    if (!has.value()) break;
    auto ready = node_->TakeReady();
    if (!ready.ok()) return Fatal(ready.status());
    HandleReady(std::move(ready).value());
    any = true;
  }
  if (any) {
    wal_->Flush();
    if (wake_ && (!to_apply_.empty() || !lost_.empty())) wake_();
  }
  if (!in_compact_) {
    // Raft may have asked for a snapshot while sending (a learner, a follower far behind).
    in_compact_ = true;
    MaybeCompact();
    in_compact_ = false;
  }
}

void RaftLog::HandleReady(Ready ready) {
  if (auto soft = ready.soft_state()) {
    const bool changed = soft->leader_id != leader_id_ || soft->role != role_;
    if (soft->role == Role::kLeader && role_ != Role::kLeader) elections_++;
    leader_id_ = soft->leader_id;
    role_ = soft->role;
    if (changed && hooks_.on_role) hooks_.on_role();
  }
  for (const RaftMessage& m : ready.messages()) Send(m);
  Slot slot;
  std::optional<SnapshotView> snap = ready.snapshot();
  std::optional<HardState> hs = ready.hard_state();
  std::vector<RaftEntry> entries = ready.entries();
  if (snap) {
    Status st = InstallSnapshot(*snap);
    if (!st.ok()) return Fatal(st);
    slot.has_snapshot = true;
    slot.snapshot_index = snap->index;
  }
  if (hs) hard_state_ = *hs;
  if (!entries.empty()) {
    const uint64_t first = entries.front().index;
    while (!tail_.empty() && tail_.back().index >= first) tail_.pop_back();
    for (const RaftEntry& e : entries) {
      tail_.push_back(Own(e));
      bytes_since_compact_ += e.data.size() + e.context.size();
    }
    last_index_ = entries.back().index;
    // A follower's uncommitted tail replaced by the new leader's: our proposals expected
    // there are gone (Poll finds another entry at their index and reports them unknown).
  }
  if (hs || snap || !entries.empty()) {
    (void)DISTRI_FAILPOINT("raft.persist");  // sleep: a slow disk; crash: before this Ready persists
    std::string record;
    SnapshotMeta meta;
    if (snap) meta = SnapshotMeta{snap->index, snap->term, snap->voters, snap->learners};
    EncodeRecord(&record, hs, snap ? &meta : nullptr, snap ? snap->data : std::string_view(),
                 entries);
    auto seq = wal_->Propose(record);
    if (!seq.ok()) return Fatal(seq.status());
    wal_proposed_ = seq.value();
    if (snap && received_record_ == UINT64_MAX) received_record_ = wal_proposed_;
  }
  slot.wal_seq = wal_proposed_;  // nothing of its own: durable with everything before it

  for (const RaftEntry& e : ready.committed_entries()) to_apply_.push_back(Own(e));
  for (const ReadState& rs : ready.read_states()) {
    if (rs.context.size() == 16 && base::GetLe64(rs.context.data()) == options_.node_id &&
        hooks_.on_read_index) {
      hooks_.on_read_index(base::GetLe64(rs.context.data() + 8), rs.index);
    }
  }
  slot.ready = std::move(ready);
  Status st = node_->AdvanceAppendAsync(slot.ready);
  if (!st.ok()) return Fatal(st);
  slots_.push_back(std::move(slot));
  if (slots_.back().wal_seq <= wal_durable_) OnDurable(wal_durable_);
  FlushReports();
}

void RaftLog::Send(const RaftMessage& m) {
  if (DISTRI_FAILPOINT("raft.send")) {
    // Lost on the way, as a network may lose it. A snapshot is streamed on a link whose end
    // the transport reports, so a lost one is reported as failed, never silently: raft would
    // otherwise hold the follower in its snapshot state, waiting for a report that never
    // comes, and the follower would never catch up.
    if (m.type == kMsgSnapshot) reports_.push_back({m.to, 2});
    return;
  }
  if (m.type == kMsgSnapshot) {
    // The transport streams the checkpoint file the message refers to, then the message,
    // and reports the outcome itself (ReportSnapshot), outside the Ready window.
    if (hooks_.send_snapshot && hooks_.send_snapshot(m.to, m.bytes)) {
      snapshots_sent_++;
    } else {
      reports_.push_back({m.to, 2});
    }
    return;
  }
  if (!hooks_.send(m.to, m.type, m.bytes)) reports_.push_back({m.to, 0});
}

void RaftLog::FlushReports() {
  std::vector<std::pair<uint64_t, int>> reports;
  reports.swap(reports_);
  for (auto [peer, what] : reports) {
    if (what == 0) {
      (void)node_->ReportUnreachable(peer);
    } else {
      (void)node_->ReportSnapshot(peer, what == 1);
    }
  }
}

// A snapshot from the leader replaces the state machine now (its committed entries come
// after it); it is made durable by the Ready's record like everything else.
Status RaftLog::InstallSnapshot(const SnapshotView& snap) {
  MemberAddresses members;
  auto payload = SnapshotPayload(snap.data);
  if (!payload.ok()) return payload.status();
  if (!payload.value().empty()) {
    auto decoded = DecodePayload(payload.value());
    if (!decoded.ok()) return decoded.status();
    DISTRI_RETURN_IF_ERROR(hooks_.load_state(decoded.value().state_index, decoded.value().state));
    members = decoded.value().members;
  } else {
    DISTRI_RETURN_IF_ERROR(hooks_.load_state(snap.index, {}));
  }
  uint64_t ref = 0, ref_size = 0;
  if (DecodeSnapshotRef(snap.data, &ref, &ref_size)) {
    // Its file stays until a checkpoint of ours covers the record that installs it.
    if (received_in_use_ != 0 && received_in_use_ != ref) {
      (void)::unlink(ReceivedSnapshotPath(received_in_use_).c_str());
    }
    received_in_use_ = ref;
    received_record_ = UINT64_MAX;  // set once the record is proposed
  }
  for (auto& [id, address] : members) members_[id] = address;
  if (!options_.address.empty()) members_[options_.node_id] = options_.address;
  // Proposals of ours expected at indexes the snapshot covers cannot be told apart now.
  for (auto it = expected_.begin(); it != expected_.end() && it->first <= snap.index;) {
    lost_.push_back({it->second, it->first});
    it = expected_.erase(it);
  }
  to_apply_.clear();
  while (!tail_.empty() && tail_.front().index <= snap.index) tail_.pop_front();
  applied_ = snap.index;
  applied_term_ = snap.term;
  hold_applied_at_ = snap.index;
  last_index_ = std::max(last_index_, snap.index);
  LOG(INFO) << "raft: installed a snapshot at index " << snap.index << " (term " << snap.term
            << ", " << snap.data.size() << " bytes)";
  if (hooks_.on_members) hooks_.on_members();
  return Status::Ok();
}

void RaftLog::ApplyConfChange(const RaftEntry& entry) {
  Status st = node_->ApplyConfChange(entry);
  if (!st.ok()) return Fatal(st);
  conf_epoch_++;
  // The address travels with the change that adds a node; every node learns it here.
  if (entry.context.size() > 9 && entry.context[0] == kMemberContext) {
    members_[base::GetLe64(entry.context.data() + 1)] = std::string(entry.context.substr(9));
  }
  // Forget addresses of nodes no longer members.
  std::vector<MemberInfo> now = Members();
  bool self_present = false;
  for (auto it = members_.begin(); it != members_.end();) {
    bool present = std::ranges::any_of(now, [&](const MemberInfo& m) { return m.id == it->first; });
    if (it->first == options_.node_id) self_present = present;
    it = present || it->first == options_.node_id ? std::next(it) : members_.erase(it);
  }
  if (!self_present && !now.empty()) {
    removed_ = true;
    LOG(WARNING) << "raft: this node (" << options_.node_id << ") was removed from the cluster";
  }
  if (hooks_.on_members) hooks_.on_members();
}

void RaftLog::OnDurable(uint64_t wal_seq) {
  wal_durable_ = std::max(wal_durable_, wal_seq);
  while (!slots_.empty() && slots_.front().wal_seq <= wal_durable_) {
    Slot& slot = slots_.front();
    Status st = node_->OnPersistReady(slot.ready.number());
    if (!st.ok()) return Fatal(st);
    for (const RaftMessage& m : slot.ready.persisted_messages()) Send(m);
    if (slot.has_snapshot && hold_applied_at_ == slot.snapshot_index) hold_applied_at_ = 0;
    slots_.pop_front();
  }
}

void RaftLog::Poll(const CommitFn& on_commit, const FailFn& on_fail) {
  PollProposals([&](uint64_t index, std::string_view entry, uint64_t) { on_commit(index, entry); },
                on_fail);
}

void RaftLog::PollProposals(const ProposalCommitFn& on_commit, const FailFn& on_fail) {
  if (closed_) return;
  // Durable WAL records release their Readies (and the persisted messages: votes and
  // append acknowledgements go out only now).
  uint64_t durable = wal_durable_;
  wal_->Poll([&](uint64_t seq, std::string_view) { durable = std::max(durable, seq); },
             [&](uint64_t, const Status& why) { Fatal(why); });
  if (durable > wal_durable_) OnDurable(durable);
  FlushReports();
  ProcessReadies();
  while (!to_apply_.empty()) {
    StoredEntry e = std::move(to_apply_.front());
    to_apply_.pop_front();
    if (e.index <= applied_) continue;
    uint64_t proposal = 0;
    std::optional<ProposalId> id = ParseContext(e.context);
    if (id && id->origin == options_.node_id) proposal = id->seq;
    auto expected = expected_.find(e.index);
    if (expected != expected_.end()) {
      if (expected->second != proposal) lost_.push_back({expected->second, e.index});
      expected_.erase(expected);
    }
    (void)DISTRI_FAILPOINT("raft.apply");  // crash: committed and persisted, not yet applied
    // Membership changes apply in index order with everything else, so the membership is
    // always the one as of applied_ (what checkpoints and compaction record with it).
    if (e.type != EntryType::kNormal) {
      ApplyConfChange(RaftEntry{e.index, e.term, e.type, e.data, e.context});
    }
    applied_ = e.index;
    applied_term_ = e.term;
    while (!tail_.empty() && tail_.front().index <= applied_) tail_.pop_front();
    if (e.type == EntryType::kNormal && !e.data.empty()) on_commit(e.index, e.data, proposal);
  }
  for (auto [proposal, index] : lost_) {
    on_fail(proposal, Status::Unknown("leadership changed before the write committed (index " +
                                      std::to_string(index) + " holds another entry)"));
  }
  lost_.clear();
  // While an installed snapshot is not durable, raft's persisted index may be below anything
  // we applied (a joining node has persisted nothing): report nothing new until it is.
  const uint64_t reportable = hold_applied_at_ != 0 ? reported_applied_ : applied_;
  if (reportable > reported_applied_) {
    Status st = node_->AdvanceApplyTo(reportable);
    if (!st.ok()) return Fatal(st);
    reported_applied_ = reportable;
  }
  ProcessReadies();
}

// Raft keeps its log in memory until compacted, and serves lagging followers from the
// snapshot it keeps. Both come from checkpoints: when the log has grown, or raft asked for a
// newer snapshot than the one kept, a checkpoint starts (a forked child writes it: the loop
// pauses only for the fork); once it is durable, raft compacts up to it and keeps a
// *reference* to its file as the snapshot (raft_wal.h), which the transport streams to a
// follower in chunks.
void RaftLog::MaybeCompact() {
  auto requested = node_->TakeSnapshotRequest();
  if (!requested.ok()) return Fatal(requested.status());
  if (requested.value() && !need_snapshot_) {
    need_snapshot_ = true;
    LOG(INFO) << "raft: a follower needs a newer snapshot than the one kept (index "
              << served_index_ << "); taking a checkpoint";
  }
  FinishCheckpoint();
  if (!need_snapshot_ && bytes_since_compact_ < options_.compact_bytes) return;
  if (DISTRI_FAILPOINT("raft.snapshot")) return;  // drop: no snapshot this time (raft asks again)
  Status st = StartCheckpoint(hooks_.save_state);
  if (!st.ok() && st.code() != Code::kBusy) {
    LOG(ERROR) << "raft: cannot start a checkpoint: " << st.ToString();
  }
}

// A checkpoint: the state machine and Raft's metadata at the applied index, written by the
// WAL's forked child; the WAL records it covers are then deleted.
Status RaftLog::SaveSnapshot(uint64_t, const log::SnapshotProducer& produce) {
  return StartCheckpoint(produce);
}

Status RaftLog::StartCheckpoint(const log::SnapshotProducer& produce) {
  const Status skipped(Code::kBusy, "no checkpoint now");
  if (checkpoint_ || wal_->SnapshotBusy()) return skipped;  // one at a time
  // The state written must be the state at the checkpoint's index, and durable.
  if (wal_durable_ == 0 || reported_applied_ == 0 || reported_applied_ != applied_) {
    return skipped;
  }
  if (wal_durable_ <= last_checkpoint_seq_) return skipped;  // nothing new since the last
  auto voters = node_->Voters();
  auto learners = node_->Learners();
  if (!voters.ok()) return voters.status();
  if (!learners.ok()) return learners.status();
  SnapshotMeta meta{reported_applied_, applied_term_, voters.value(), learners.value()};
  std::string header = EncodeCheckpointHeader(
      hard_state_, meta, std::vector<StoredEntry>(tail_.begin(), tail_.end()));
  header += EncodePayloadHeader(members_, hooks_.state_index());
  const uint64_t failures = wal_->snapshot_failures();
  DISTRI_RETURN_IF_ERROR(wal_->SaveSnapshot(
      wal_durable_, [header = std::move(header), &produce](const log::SnapshotWriteFn& write) {
        DISTRI_RETURN_IF_ERROR(write(header));
        return produce(write);
      }));
  checkpoint_ = Checkpoint{wal_durable_, reported_applied_, conf_epoch_, failures};
  return Status::Ok();
}

void RaftLog::FinishCheckpoint() {
  if (!checkpoint_ || wal_->snapshot_running()) return;
  const Checkpoint c = *checkpoint_;
  checkpoint_.reset();
  if (wal_->snapshot_failures() != c.failures) return;  // the WAL logged why; retried later
  last_checkpoint_seq_ = c.seq;
  const std::string path = wal_->SnapshotFilePath(c.seq);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    LOG(ERROR) << "raft: checkpoint " << path << " vanished: " << std::strerror(errno);
    return;
  }
  if (c.conf_epoch != conf_epoch_) {
    // The membership changed while it was written: raft would describe it with the new one.
    LOG(INFO) << "raft: checkpoint " << c.seq << " predates a membership change; not served";
    return;
  }
  Status s = node_->Compact(c.index, EncodeSnapshotRef(c.seq, static_cast<uint64_t>(st.st_size)));
  if (!s.ok()) {
    LOG(ERROR) << "raft: compaction at " << c.index << " failed: " << s.ToString();
    return;
  }
  need_snapshot_ = false;
  bytes_since_compact_ = 0;
  served_index_ = c.index;
  LOG(INFO) << "raft: log compacted to index " << c.index << "; checkpoint " << c.seq
            << " is the snapshot for followers";
  // A snapshot received from a leader is covered by this checkpoint once its record is.
  if (received_in_use_ != 0 && received_record_ <= c.seq) {
    (void)::unlink(ReceivedSnapshotPath(received_in_use_).c_str());
    received_in_use_ = 0;
  }
}

std::string RaftLog::CheckpointPath(uint64_t id) const { return wal_->SnapshotFilePath(id); }

std::string RaftLog::ReceivedSnapshotPath(uint64_t id) const {
  return options_.dir + "/received-" + log::IndexedFileName(id, ".snap");
}

// The snapshot payload a snapshot's data stands for: empty (the bootstrap snapshot), a
// reference to a checkpoint file received from the leader, or (from an older node) the
// payload itself.
Result<std::string> RaftLog::SnapshotPayload(std::string_view data) const {
  uint64_t id = 0, size = 0;
  if (data.empty()) return std::string();
  if (!DecodeSnapshotRef(data, &id, &size)) return std::string(data);
  const std::string path = ReceivedSnapshotPath(id);
  auto file = log::DefaultFileSystem()->OpenReadOnly(path);
  if (!file.ok()) return file.status();
  std::string_view bytes = file.value()->data();
  if (bytes.size() != size) return Status::Corruption(path + " is not the size its snapshot says");
  auto payload = CheckpointFilePayload(bytes, path, id);
  if (!payload.ok()) return payload.status();
  return std::string(payload.value());
}

}  // namespace distri::replication
