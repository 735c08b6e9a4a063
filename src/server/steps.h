// StepRunner: runs reads too long for one loop iteration (KEYS over a big
// room) a slice at a time, one slice per task per loop iteration, so other
// clients are served in between. Implements commands::Context::RunInSteps.
//
// While its task runs, the client is blocked (Session::blocked, as during a
// CALL): it runs no other command, so its replies stay in request order. The
// task's last step writes the reply; the client then resumes with whatever it
// had pipelined. A task whose client has gone is dropped at its next step.
//
// Thread-safety: loop thread only.

#ifndef DISTRI_SERVER_STEPS_H_
#define DISTRI_SERVER_STEPS_H_

#include <uv.h>

#include <cstdint>
#include <vector>

#include "commands/command.h"

namespace distri::server {

class Server;

class StepRunner {
 public:
  StepRunner(Server* server, uv_loop_t* loop);
  StepRunner(const StepRunner&) = delete;
  StepRunner& operator=(const StepRunner&) = delete;

  // Blocks the session and calls `step` once per loop iteration until it
  // returns true. REQUIRES: the session is not blocked.
  void Start(commands::Session& session, commands::Step step);
  // Closes the idle handle (server shutdown).
  void Close();
  size_t running() const { return tasks_.size(); }

 private:
  struct Task {
    uint64_t client_id;
    commands::Step step;
  };
  static void OnIdle(uv_idle_t* handle);
  void RunOnce();

  Server* server_;
  uv_idle_t idle_;  // active while tasks run: keeps the loop polling without blocking
  bool open_ = true;
  std::vector<Task> tasks_;
};

}  // namespace distri::server

#endif  // DISTRI_SERVER_STEPS_H_
