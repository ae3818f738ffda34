// A Gloo process group over TCP: the full mesh of connections to the other ranks and the one
// thread that runs Gloo's collectives on it.
//
// Why a thread of its own: a Gloo collective blocks its caller until the peers take part. Run on
// the queue's worker it would stop every op queued behind it, so DDP could not overlap a
// gradient bucket's all-reduce with the rest of backward. The worker only hands a job over (in
// queue order, so the jobs run in the order JS enqueued the collectives, the same on every
// rank) and waits for it when an op needs its result.
//
// Failure: every Gloo wait is bounded by the group's timeout. A job that fails (a peer's
// connection closed, a timeout) breaks the group: the failure is reported naming the
// collective and the peer where Gloo's message names its address; every later job fails at
// once, and the group shuts its connections down so that the peers fail at once too instead of
// waiting for their own timeouts.
//
// Abort(): makes a blocked job fail at once and wakes every waiter, so that stopping the queue
// never waits for a peer. Gloo has no call that interrupts a collective, but every wait of its
// TCP transport fails when its socket reads end-of-file, so Abort() shuts the group's sockets
// down. Gloo does not hand out its sockets (the pair's header needs gloo/common/memory.h, which
// Debian's libgloo-dev lacks), so Connect() finds them once, by address, among the process's
// descriptors, and keeps duplicates of its own: shutdown() acts on the connection, and a
// duplicate cannot be closed and reused by anyone else, so Abort() can never reach another
// socket of the process. See docs/architecture.md, "Distributed".
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace gloo {
class Context;
}

namespace cr::cpu {

class GlooMesh;

class GlooGroup {
 public:
  using Run = std::function<void(const std::shared_ptr<gloo::Context>& context, std::chrono::milliseconds timeout, uint32_t tag)>;

  // Listens on `host` (one socket per peer) without connecting yet.
  GlooGroup(int rank, int size, std::chrono::milliseconds timeout, const std::string& host);
  ~GlooGroup();
  GlooGroup(const GlooGroup&) = delete;
  GlooGroup& operator=(const GlooGroup&) = delete;

  const int rank;
  const int size;
  const std::chrono::milliseconds timeout;

  // What this rank publishes for the others: its listening addresses, one per peer.
  std::vector<uint8_t> Published() const;
  // Connects to every peer from what each rank published (indexed by rank). Blocks up to the
  // timeout; throws a NativeError (ERR_DIST_CONNECT) naming the peers that did not connect.
  void Connect(const std::vector<std::vector<uint8_t>>& published);

  // The next collective's ticket. JS thread: tickets are numbered in enqueue order, and each is
  // submitted by a task of the queue, so jobs arrive in ticket order.
  uint64_t Issue() { return issued_++; }
  // How many tickets were issued (JS thread).
  uint64_t Issued() const { return issued_; }
  // Hands `run` to the communication thread, after every job submitted before it; every issued
  // ticket must be submitted once. `name` ("allReduce #3 (2 buffers, 4096 values)") is what a
  // failure names. Worker thread.
  void Submit(uint64_t ticket, std::string name, Run run);
  // Blocks until job `ticket` has run; throws its failure. Worker thread.
  void Wait(uint64_t ticket);
  // How many jobs were handed over (tickets below it). Worker thread.
  uint64_t Submitted();
  // Blocks until the jobs with tickets below `upto` have run. Any thread.
  void WaitDone(uint64_t upto);
  // See the top of this file. Any thread; the first reason is kept.
  void Abort(const std::string& why);

 private:
  struct Job {
    uint64_t ticket;
    std::string name;
    Run run;
  };
  struct Outcome {
    std::string code, message;
  };
  void Loop();
  // The failure of job `name` from what Gloo threw, naming the peer where the message tells.
  Outcome Explain(const std::string& name, const std::string& what);
  // Ends every connection of the group (mu_ held).
  void ShutdownSockets();

  std::shared_ptr<GlooMesh> mesh_;
  // The mesh once connected (set under mu_).
  std::shared_ptr<gloo::Context> context_;
  // Each peer's address as Gloo's messages write it ("[127.0.0.1]:4567"), by rank.
  std::vector<std::string> peer_names_;
  // Our duplicates of the mesh's connected sockets, closed by the destructor (see the top).
  std::vector<int> sockets_;
  // Whether Abort() ends every connection, so that a job blocked in Gloo fails at once and
  // Wait() and WaitDone() can wait for it even after an abort (which keeps the release of its
  // buffers in order). Not so when a pair's socket was not found: then an abort releases the
  // waiters at once and the job ends at Gloo's timeout.
  bool interruptible_ = true;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  uint64_t issued_ = 0;
  uint64_t submitted_ = 0;  // jobs with ticket < submitted_ were handed over
  // Failures by ticket, kept until the group goes away: a wait is a fence and may come twice.
  std::map<uint64_t, Outcome> failed_;
  uint64_t done_ = 0;  // jobs with ticket < done_ have run
  bool stopping_ = false;
  std::string aborted_;
  // After the first failure every job fails with it.
  std::string broken_code_, broken_;
  std::thread thread_;
};

}  // namespace cr::cpu
