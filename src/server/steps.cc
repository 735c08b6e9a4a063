// See steps.h.

#include "server/steps.h"

#include "base/logging.h"
#include "server/client.h"
#include "server/server.h"

namespace distri::server {

StepRunner::StepRunner(Server* server, uv_loop_t* loop) : server_(server) {
  uv_idle_init(loop, &idle_);
  idle_.data = this;
}

void StepRunner::Close() {
  if (!open_) return;
  open_ = false;
  tasks_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), nullptr);
}

void StepRunner::Start(commands::Session& session, commands::Step step) {
  CHECK(!session.blocked);
  session.blocked = true;
  tasks_.push_back({session.id, std::move(step)});
  if (open_ && tasks_.size() == 1) uv_idle_start(&idle_, OnIdle);
}

void StepRunner::OnIdle(uv_idle_t* handle) { static_cast<StepRunner*>(handle->data)->RunOnce(); }

void StepRunner::RunOnce() {
  std::vector<Task> tasks;
  tasks.swap(tasks_);
  for (Task& t : tasks) {
    Client* c = server_->FindClient(t.client_id);
    if (c == nullptr || c->conn().closing()) continue;  // nobody to answer
    commands::Session& s = c->session();
    protocol::ReplyWriter reply(&c->conn().output(), s.protocol);
    reply.set_limit(c->ReplyLimit(c->conn().output()));
    if (!t.step(*server_, reply)) {
      tasks_.push_back(std::move(t));
      continue;
    }
    s.blocked = false;
    if (reply.overflowed()) {  // as in Client::ProcessInput
      server_->DisconnectSlowConsumer(c, "a reply would pass the output limit");
      continue;
    }
    server_->MarkDirty(c);
    server_->Resume(c);
  }
  if (tasks_.empty()) uv_idle_stop(&idle_);
}

}  // namespace distri::server
