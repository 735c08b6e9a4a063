// RaftNode: C++ wrapper over raft_capi.h. Every call is one C call plus a translation of its
// return code into a Status; Ready accessors turn the C views into C++ structs that borrow
// the handle's bytes.

#include "replication/raft_node.h"

#include <algorithm>
#include <string>
#include <utility>

#include "replication/raft_capi.h"

namespace distri::replication {

namespace {

std::string_view View(const uint8_t* data, size_t len) {
  return len == 0 ? std::string_view() : std::string_view(reinterpret_cast<const char*>(data), len);
}

const uint8_t* Bytes(std::string_view s) { return reinterpret_cast<const uint8_t*>(s.data()); }

Status FromCode(int rc, std::string_view message) {
  switch (rc) {
    case DISTRI_RAFT_OK:
      return Status::Ok();
    case DISTRI_RAFT_ERR_INVALID_ARGUMENT:
      return Status::InvalidArgument(message);
    case DISTRI_RAFT_ERR_PROPOSAL_DROPPED:
      return Status(Code::kBusy, message);
    default:
      return Status::Internal(message);
  }
}

std::vector<RaftEntry> Entries(const distri_raft_entry* entries, size_t len) {
  std::vector<RaftEntry> out;
  out.reserve(len);
  for (size_t i = 0; i < len; ++i) {
    const distri_raft_entry& e = entries[i];
    out.push_back(RaftEntry{e.index, e.term, static_cast<EntryType>(e.entry_type),
                            View(e.data, e.data_len), View(e.context, e.context_len)});
  }
  return out;
}

// The C view of `config`; it borrows config's vectors.
distri_raft_config ToC(const RaftConfig& config) {
  distri_raft_config c{};
  c.id = config.id;
  c.voters = config.voters.data();
  c.voters_len = config.voters.size();
  c.learners = config.learners.data();
  c.learners_len = config.learners.size();
  c.election_tick = config.election_tick;
  c.heartbeat_tick = config.heartbeat_tick;
  c.applied = config.applied;
  c.max_size_per_msg = config.max_size_per_msg;
  c.max_inflight_msgs = config.max_inflight_msgs;
  c.check_quorum = config.check_quorum ? 1 : 0;
  c.pre_vote = config.pre_vote ? 1 : 0;
  return c;
}

}  // namespace

// ---- Ready ----------------------------------------------------------------------------------

Ready& Ready::operator=(Ready&& other) noexcept {
  if (this != &other) {
    distri_raft_ready_free(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

Ready::~Ready() { distri_raft_ready_free(handle_); }

uint64_t Ready::number() const { return handle_ ? distri_raft_ready_number(handle_) : 0; }

bool Ready::must_sync() const { return handle_ && distri_raft_ready_must_sync(handle_) != 0; }

uint64_t Ready::commit_index() const {
  return handle_ ? distri_raft_ready_commit_index(handle_) : 0;
}

std::optional<SoftState> Ready::soft_state() const {
  distri_raft_soft_state s;
  if (!handle_ || !distri_raft_ready_soft_state(handle_, &s)) return std::nullopt;
  return SoftState{s.leader_id, static_cast<Role>(s.role)};
}

std::optional<HardState> Ready::hard_state() const {
  distri_raft_hard_state s;
  if (!handle_ || !distri_raft_ready_hard_state(handle_, &s)) return std::nullopt;
  return HardState{s.term, s.vote, s.commit};
}

std::optional<SnapshotView> Ready::snapshot() const {
  distri_raft_snapshot s;
  if (!handle_ || !distri_raft_ready_snapshot(handle_, &s)) return std::nullopt;
  return SnapshotView{s.index, s.term, View(s.data, s.data_len),
                      std::vector<uint64_t>(s.voters, s.voters + s.voters_len),
                      std::vector<uint64_t>(s.learners, s.learners + s.learners_len)};
}

std::vector<RaftMessage> Ready::Messages(bool persisted) const {
  std::vector<RaftMessage> out;
  if (!handle_) return out;
  size_t len = 0;
  const distri_raft_message* msgs = distri_raft_ready_messages(handle_, persisted ? 1 : 0, &len);
  out.reserve(len);
  for (size_t i = 0; i < len; ++i) {
    out.push_back(RaftMessage{msgs[i].to, msgs[i].msg_type, View(msgs[i].data, msgs[i].len)});
  }
  return out;
}

std::vector<RaftMessage> Ready::messages() const { return Messages(false); }

std::vector<RaftMessage> Ready::persisted_messages() const { return Messages(true); }

std::vector<RaftEntry> Ready::entries() const {
  if (!handle_) return {};
  size_t len = 0;
  const distri_raft_entry* e = distri_raft_ready_entries(handle_, &len);
  return Entries(e, len);
}

std::vector<RaftEntry> Ready::committed_entries() const {
  if (!handle_) return {};
  size_t len = 0;
  const distri_raft_entry* e = distri_raft_ready_committed_entries(handle_, &len);
  return Entries(e, len);
}

std::vector<ReadState> Ready::read_states() const {
  std::vector<ReadState> out;
  if (!handle_) return out;
  size_t len = 0;
  const distri_raft_read_state* rs = distri_raft_ready_read_states(handle_, &len);
  out.reserve(len);
  for (size_t i = 0; i < len; ++i) {
    out.push_back(ReadState{rs[i].index, View(rs[i].context, rs[i].context_len)});
  }
  return out;
}

// ---- RaftNode -------------------------------------------------------------------------------

Result<std::unique_ptr<RaftNode>> RaftNode::Create(const RaftConfig& config) {
  distri_raft_config c = ToC(config);
  char err[256] = {0};
  distri_raft_node* node = nullptr;
  int rc = distri_raft_node_new(&c, &node, err, sizeof(err));
  if (rc != DISTRI_RAFT_OK) return FromCode(rc, std::string("raft: ") + err);
  return std::unique_ptr<RaftNode>(new RaftNode(node, config.id));
}

Result<std::unique_ptr<RaftNode>> RaftNode::Restore(const RaftConfig& config,
                                                    const RestoreState& state) {
  distri_raft_config c = ToC(config);
  std::vector<distri_raft_entry> entries;
  entries.reserve(state.entries.size());
  for (const OwnedEntry& e : state.entries) {
    entries.push_back(distri_raft_entry{e.index, e.term, static_cast<int32_t>(e.type),
                                        Bytes(e.data), e.data.size(), Bytes(e.context),
                                        e.context.size()});
  }
  distri_raft_restore_state r{};
  r.hard_state = {state.hard_state.term, state.hard_state.vote, state.hard_state.commit};
  r.snapshot_index = state.snapshot_index;
  r.snapshot_term = state.snapshot_term;
  r.voters = state.voters.data();
  r.voters_len = state.voters.size();
  r.learners = state.learners.data();
  r.learners_len = state.learners.size();
  r.entries = entries.data();
  r.entries_len = entries.size();
  char err[256] = {0};
  distri_raft_node* node = nullptr;
  int rc = distri_raft_node_restore(&c, &r, &node, err, sizeof(err));
  if (rc != DISTRI_RAFT_OK) return FromCode(rc, std::string("raft: ") + err);
  return std::unique_ptr<RaftNode>(new RaftNode(node, config.id));
}


RaftNode::~RaftNode() { distri_raft_node_free(node_); }

Status RaftNode::Check(int rc) const {
  if (rc == DISTRI_RAFT_OK) return Status::Ok();
  return FromCode(rc, std::string("raft: ") + distri_raft_node_last_error(node_));
}

Status RaftNode::Tick() { return Check(distri_raft_tick(node_)); }

Status RaftNode::Step(std::string_view message) {
  return Check(distri_raft_step(node_, Bytes(message), message.size()));
}

Status RaftNode::Propose(std::string_view context, std::string_view data) {
  return Check(
      distri_raft_propose(node_, Bytes(context), context.size(), Bytes(data), data.size()));
}

Status RaftNode::ProposeConfChange(std::string_view context, std::span<const ConfChange> changes) {
  std::vector<distri_raft_conf_change> c;
  c.reserve(changes.size());
  for (const ConfChange& change : changes) {
    c.push_back(distri_raft_conf_change{static_cast<int32_t>(change.type), change.node_id});
  }
  return Check(distri_raft_propose_conf_change(node_, Bytes(context), context.size(), c.data(),
                                               c.size()));
}

Status RaftNode::ApplyConfChange(const RaftEntry& entry) {
  return Check(distri_raft_apply_conf_change(node_, static_cast<int32_t>(entry.type),
                                             Bytes(entry.data), entry.data.size()));
}

Status RaftNode::ReadIndex(std::string_view context) {
  return Check(distri_raft_read_index(node_, Bytes(context), context.size()));
}

Status RaftNode::TransferLeader(uint64_t to) {
  return Check(distri_raft_transfer_leader(node_, to));
}

Status RaftNode::Campaign() { return Check(distri_raft_campaign(node_)); }

Status RaftNode::ReportUnreachable(uint64_t id) {
  return Check(distri_raft_report_unreachable(node_, id));
}

Status RaftNode::ReportSnapshot(uint64_t id, bool delivered) {
  return Check(distri_raft_report_snapshot(node_, id, delivered ? 0 : 1));
}

Status RaftNode::Compact(uint64_t index, std::string_view snapshot_data) {
  return Check(distri_raft_compact(node_, index, Bytes(snapshot_data), snapshot_data.size()));
}

Result<bool> RaftNode::TakeSnapshotRequest() {
  int rc = distri_raft_take_snapshot_request(node_);
  if (rc < 0) return Check(-rc);
  return rc == 1;
}

Result<bool> RaftNode::HasReady() {
  int rc = distri_raft_has_ready(node_);
  if (rc < 0) return Check(-rc);
  return rc == 1;
}

Result<Ready> RaftNode::TakeReady() {
  distri_raft_ready* handle = nullptr;
  DISTRI_RETURN_IF_ERROR(Check(distri_raft_take_ready(node_, &handle)));
  return Ready(handle);
}

Result<Ready> RaftNode::Advance(Ready& ready) {
  distri_raft_ready* light = nullptr;
  DISTRI_RETURN_IF_ERROR(Check(distri_raft_advance(node_, ready.handle_, &light)));
  return Ready(light);
}

Result<Ready> RaftNode::AdvanceAppend(Ready& ready) {
  distri_raft_ready* light = nullptr;
  DISTRI_RETURN_IF_ERROR(Check(distri_raft_advance_append(node_, ready.handle_, &light)));
  return Ready(light);
}

Status RaftNode::AdvanceAppendAsync(Ready& ready) {
  return Check(distri_raft_advance_append_async(node_, ready.handle_));
}

Status RaftNode::OnPersistReady(uint64_t number) {
  return Check(distri_raft_on_persist_ready(node_, number));
}

Status RaftNode::AdvanceApplyTo(uint64_t applied) {
  return Check(distri_raft_advance_apply_to(node_, applied));
}

Result<RaftStatus> RaftNode::GetStatus() {
  distri_raft_status s;
  DISTRI_RETURN_IF_ERROR(Check(distri_raft_node_status(node_, &s)));
  return RaftStatus{s.id,         s.term,      s.vote, s.commit, s.applied,
                    s.last_index, s.leader_id, static_cast<Role>(s.role)};
}

Result<std::vector<uint64_t>> RaftNode::Members(bool learners) {
  size_t len = 0;
  DISTRI_RETURN_IF_ERROR(Check(distri_raft_node_conf_state(node_, learners, nullptr, 0, &len)));
  std::vector<uint64_t> ids(len);
  DISTRI_RETURN_IF_ERROR(
      Check(distri_raft_node_conf_state(node_, learners, ids.data(), ids.size(), &len)));
  ids.resize(std::min(len, ids.size()));
  std::sort(ids.begin(), ids.end());  // raft keeps them in a hash set
  return ids;
}

Result<std::vector<uint64_t>> RaftNode::Voters() { return Members(false); }

Result<std::pair<uint64_t, std::string>> RaftNode::SnapshotOf(std::string_view message,
                                                              size_t max_data) {
  uint64_t index = 0;
  size_t len = 0;
  std::string data(max_data, '\0');
  const int rc = distri_raft_message_snapshot(reinterpret_cast<const uint8_t*>(message.data()),
                                              message.size(), &index,
                                              reinterpret_cast<uint8_t*>(data.data()),
                                              data.size(), &len);
  if (rc != 0) return Status::InvalidArgument("not a raft snapshot message of a known size");
  data.resize(len);
  return std::make_pair(index, std::move(data));
}

Result<std::vector<std::pair<uint64_t, uint64_t>>> RaftNode::Progress() {
  size_t len = 0;
  DISTRI_RETURN_IF_ERROR(Check(distri_raft_node_progress(node_, nullptr, nullptr, 0, &len)));
  std::vector<uint64_t> ids(len), matched(len);
  DISTRI_RETURN_IF_ERROR(
      Check(distri_raft_node_progress(node_, ids.data(), matched.data(), len, &len)));
  std::vector<std::pair<uint64_t, uint64_t>> out;
  for (size_t i = 0; i < std::min(len, ids.size()); i++) out.emplace_back(ids[i], matched[i]);
  return out;
}

Result<std::vector<uint64_t>> RaftNode::Learners() { return Members(true); }

}  // namespace distri::replication
