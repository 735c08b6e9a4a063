// CLUSTER.* commands: the Raft cluster as a client sees it (server/cluster.h does the work).
// On a node started without --cluster-secret-file they answer that there is no cluster.

#include "base/strings.h"
#include "commands/command.h"

namespace distri::commands {

namespace {

ClusterControl* ClusterOf(Call& call) {
  ClusterControl* cluster = call.ctx.cluster();
  if (cluster == nullptr) {
    call.reply.Error("ERR this node is not in a cluster (start it with --cluster-secret-file)");
  }
  return cluster;
}

bool NodeIdArg(Call& call, uint64_t* id) {
  if (!base::ParseUint64(call.args[1], id) || *id == 0) {
    call.reply.Error("ERR node id must be a positive integer (see CLUSTER.NODES)");
    return false;
  }
  return true;
}

void ReplyStatus(Call& call, const Status& st) {
  if (st.ok()) {
    call.reply.Ok();
  } else if (st.code() == Code::kBusy) {
    call.reply.Error(st.message());  // TRYAGAIN ...
  } else {
    call.reply.Error("ERR " + st.message());
  }
}

void Info(Call& call) {
  if (ClusterControl* c = ClusterOf(call)) c->Info(call.reply);
}

void Nodes(Call& call) {
  if (ClusterControl* c = ClusterOf(call)) c->Nodes(call.reply);
}

// Every member's own figures, gathered over the cluster links (server/cluster_stats.h).
void Stats(Call& call) {
  if (ClusterOf(call) != nullptr) call.ctx.ClusterStats(call.session, call.reply);
}

void Join(Call& call) {
  if (ClusterControl* c = ClusterOf(call)) ReplyStatus(call, c->Join(call.args[1]));
}

void Remove(Call& call) {
  uint64_t id = 0;
  ClusterControl* c = ClusterOf(call);
  if (c != nullptr && NodeIdArg(call, &id)) ReplyStatus(call, c->Remove(id));
}

void Leave(Call& call) {
  if (ClusterControl* c = ClusterOf(call)) ReplyStatus(call, c->Leave());
}

void Transfer(Call& call) {
  uint64_t id = 0;
  ClusterControl* c = ClusterOf(call);
  if (c != nullptr && NodeIdArg(call, &id)) ReplyStatus(call, c->Transfer(id));
}

}  // namespace

void AddClusterCommands(std::vector<CommandSpec>* out) {
  // Not kReadOnly: they describe this node and must answer without a quorum (no read point).
  out->insert(out->end(), {
    {"cluster.info", 1, 0, 0, 0, 0, Info, "This node's view of the cluster"},
    {"cluster.nodes", 1, 0, 0, 0, 0, Nodes, "Every member: address, role, progress, health"},
    {"cluster.stats", 1, 0, 0, 0, 0, Stats, "Every node's own statistics, one map per member"},
    {"cluster.join", 2, kAdmin, 0, 0, 0, Join, "Add a node through this member"},
    {"cluster.remove", 2, kAdmin, 0, 0, 0, Remove, "Remove a node from the cluster"},
    {"cluster.leave", 1, kAdmin, 0, 0, 0, Leave, "Remove this node from the cluster"},
    {"cluster.transfer", 2, kAdmin, 0, 0, 0, Transfer, "Move leadership to a voter"},
  });
}

}  // namespace distri::commands
