#include "gloo_group.h"

#include <gloo/context.h>
#include <gloo/transport/tcp/address.h>
#include <gloo/transport/tcp/device.h>
#include <dirent.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>

#include "../common/errors.h"

namespace cr::cpu {

namespace tcp = gloo::transport::tcp;

namespace {

bool SameEndpoint(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    const auto& x = reinterpret_cast<const sockaddr_in&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in&>(b);
    return x.sin_port == y.sin_port && std::memcmp(&x.sin_addr, &y.sin_addr, sizeof x.sin_addr) == 0;
  }
  if (a.ss_family == AF_INET6) {
    const auto& x = reinterpret_cast<const sockaddr_in6&>(a);
    const auto& y = reinterpret_cast<const sockaddr_in6&>(b);
    return x.sin6_port == y.sin6_port && std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
  }
  return false;
}

}  // namespace

// A gloo::Context whose connections are made in two steps, around a rendezvous that is not a
// gloo::rendezvous::Store: lib/distributed exchanges the addresses over its own TCP store.
class GlooMesh : public gloo::Context {
 public:
  GlooMesh(int rank, int size, std::chrono::milliseconds timeout, const std::string& host) : gloo::Context(rank, size) {
    tcp::attr attr;
    attr.hostname = host;
    device_ = tcp::CreateDevice(attr);
    setTimeout(timeout);
    transportContext_ = device_->createContext(rank, size);
    transportContext_->setTimeout(timeout);
    for (int i = 0; i < size; ++i) {
      if (i != rank) transportContext_->createPair(i);
    }
  }

  std::vector<uint8_t> Published() {
    std::vector<uint8_t> out;
    for (int i = 0; i < size; ++i) {
      if (i == rank) continue;
      const std::vector<char> bytes = getPair(i)->address().bytes();
      out.insert(out.end(), bytes.begin(), bytes.end());
    }
    return out;
  }

  // Rank `peer`'s address for this rank's pair, from what `peer` published: its addresses for
  // every other rank, in rank order (gloo::rendezvous::Context's layout).
  std::vector<char> AddressFrom(int peer, const std::vector<uint8_t>& published) const {
    const size_t each = published.size() / size_t(size - 1);
    const size_t slot = size_t(rank > peer ? rank - 1 : rank);
    return std::vector<char>(published.begin() + long(slot * each), published.begin() + long((slot + 1) * each));
  }

  void Connect(int peer, const std::vector<char>& address) { getPair(peer)->connect(address); }

  // The connected sockets of this mesh: those accepted on this rank's listening address and
  // those connected to a peer's. Gloo has no public way to interrupt a collective that waits for
  // a peer, but it fails every operation waiting on a socket that reads end-of-file; shutting
  // these down is how Abort() gets that. Found by address because the Debian package lacks a
  // header (gloo/common/memory.h) that the pair's declaration needs.
  std::vector<int> Sockets(const std::vector<sockaddr_storage>& peers) {
    sockaddr_storage self = gloo::transport::tcp::Address(getPair(rank == 0 ? 1 : 0)->address().bytes()).getSockaddr();
    std::vector<int> fds;
    DIR* dir = opendir("/proc/self/fd");
    if (!dir) return fds;
    while (dirent* e = readdir(dir)) {
      const int fd = std::atoi(e->d_name);
      if (e->d_name[0] == '.' || fd == dirfd(dir)) continue;
      sockaddr_storage mine{}, theirs{};
      socklen_t a = sizeof mine, b = sizeof theirs;
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &a) != 0) continue;
      if (getpeername(fd, reinterpret_cast<sockaddr*>(&theirs), &b) != 0) continue;
      bool ours = SameEndpoint(mine, self);
      for (const sockaddr_storage& p : peers) ours = ours || SameEndpoint(theirs, p);
      if (ours) fds.push_back(fd);
    }
    closedir(dir);
    return fds;
  }
};

GlooGroup::GlooGroup(int rank, int size, std::chrono::milliseconds timeout, const std::string& host)
    : rank(rank), size(size), timeout(timeout) {
  OpScope scope("cpu", "groupPrepare");
  try {
    mesh_ = std::make_shared<GlooMesh>(rank, size, timeout, host);
  } catch (const std::exception& e) {
    Fail("ERR_DIST_ADDRESS", "cannot listen on '" + host + "' for the other ranks: " + e.what());
  }
  thread_ = std::thread([this] { Loop(); });
}

GlooGroup::~GlooGroup() {
  Abort("the process group was destroyed");
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  context_.reset();
  mesh_.reset();
}

std::vector<uint8_t> GlooGroup::Published() const { return mesh_->Published(); }

void GlooGroup::Connect(const std::vector<std::vector<uint8_t>>& published) {
  if (published.size() != size_t(size)) {
    Fail("ERR_DIST_CONNECT", std::to_string(published.size()) + " ranks published addresses for a group of " + std::to_string(size));
  }
  const size_t each = mesh_->Published().size() / size_t(size > 1 ? size - 1 : 1);
  for (int i = 0; i < size; ++i) {
    if (i != rank && published[size_t(i)].size() != each * size_t(size - 1)) {
      Fail("ERR_DIST_CONNECT", "rank " + std::to_string(i) + " published " + std::to_string(published[size_t(i)].size()) +
                                   " bytes of addresses, not " + std::to_string(each * size_t(size - 1)) +
                                   " (a different build, or a different world size?)");
    }
  }
  std::vector<sockaddr_storage> peers;
  for (int i = 0; i < size; ++i) {
    if (i == rank) continue;
    const std::vector<char> address = mesh_->AddressFrom(i, published[size_t(i)]);
    try {
      mesh_->Connect(i, address);
    } catch (const std::exception& e) {
      Fail("ERR_DIST_CONNECT", "could not connect to rank " + std::to_string(i) + " within " +
                                   std::to_string(timeout.count()) + " ms: " + e.what());
    }
    peers.push_back(tcp::Address(address).getSockaddr());
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (size > 1) sockets_ = mesh_->Sockets(peers);
  context_ = mesh_;
}

void GlooGroup::Submit(uint64_t ticket, std::string name, Run run) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(Job{ticket, std::move(name), std::move(run)});
  }
  cv_.notify_all();
}

void GlooGroup::Wait(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return done_ > ticket || !aborted_.empty(); });
  auto it = failed_.find(ticket);
  if (it != failed_.end()) {
    Outcome o = std::move(it->second);
    failed_.erase(it);
    throw NativeError("cpu", OpScope::CurrentOp(), o.code, o.message);
  }
  if (done_ <= ticket) throw NativeError("cpu", OpScope::CurrentOp(), "ERR_DIST_ABORTED", OpScope::CurrentOp() + ": " + aborted_);
}

void GlooGroup::Abort(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!aborted_.empty()) return;
    aborted_ = why;
    // Gloo owns the descriptors and closes them; shutdown() only ends the connections. A
    // descriptor Gloo closed and the process reused would be shut down too, which is why this
    // happens only when the group is going away anyway.
    for (int fd : sockets_) ::shutdown(fd, SHUT_RDWR);
  }
  cv_.notify_all();
}

void GlooGroup::Loop() {
  for (;;) {
    Job job;
    std::string broken_code, broken, aborted;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return !jobs_.empty() || stopping_; });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      broken_code = broken_code_;
      broken = broken_;
      aborted = aborted_;
    }
    std::optional<Outcome> failure;
    if (!broken.empty()) {
      failure = Outcome{broken_code, job.name + ": the process group failed earlier: " + broken};
    } else if (!aborted.empty()) {
      failure = Outcome{"ERR_DIST_ABORTED", job.name + ": " + aborted};
    } else if (!context_) {
      failure = Outcome{"ERR_DIST_NOT_INITIALIZED", job.name + ": the process group is not connected"};
    } else {
      try {
        job.run(context_, timeout, uint32_t(job.ticket));
      } catch (const std::exception& e) {
        failure = Explain(job.name, e.what());
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (failure) {
        if (broken_.empty()) {
          broken_code_ = failure->code;
          broken_ = failure->message;
        }
        failed_[job.ticket] = std::move(*failure);
      }
      done_ = job.ticket + 1;
    }
    cv_.notify_all();
  }
}

GlooGroup::Outcome GlooGroup::Explain(const std::string& name, const std::string& what) const {
  std::string aborted;
  {
    std::lock_guard<std::mutex> lock(const_cast<std::mutex&>(mu_));
    aborted = aborted_;
  }
  if (!aborted.empty()) return {"ERR_DIST_ABORTED", name + " failed: " + aborted};
  // With two ranks the peer is known; with more, lib/distributed names a rank that left through
  // Abort() when its rendezvous connection closes.
  const std::string who = size == 2 ? "rank " + std::to_string(1 - rank) : "at least one other rank";
  if (what.find("Timed out") != std::string::npos || what.find("timeout") != std::string::npos) {
    return {"ERR_DIST_TIMEOUT", name + " timed out on rank " + std::to_string(rank) + " after " + std::to_string(timeout.count()) +
                                    " ms: " + who + " did not take part (it hangs, or it called other collectives in another order): " + what};
  }
  if (what.find("closed") != std::string::npos || what.find("reset") != std::string::npos || what.find("Read error") != std::string::npos) {
    return {"ERR_DIST_PEER_LOST", name + " failed on rank " + std::to_string(rank) + ": lost the connection to " + who +
                                      " (it exited, was killed or failed): " + what};
  }
  return {"ERR_DIST_FAILED", name + " failed on rank " + std::to_string(rank) + ": " + what};
}

}  // namespace cr::cpu
