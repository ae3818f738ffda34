#include "gloo_group.h"

#include <gloo/context.h>
#include <gloo/transport/tcp/address.h>
#include <gloo/transport/tcp/device.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>

#include "../common/errors.h"

namespace cr::cpu {

namespace tcp = gloo::transport::tcp;

namespace {

bool SameHost(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    return std::memcmp(&reinterpret_cast<const sockaddr_in&>(a).sin_addr, &reinterpret_cast<const sockaddr_in&>(b).sin_addr, sizeof(in_addr)) == 0;
  }
  if (a.ss_family == AF_INET6) {
    return std::memcmp(&reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, &reinterpret_cast<const sockaddr_in6&>(b).sin6_addr, sizeof(in6_addr)) == 0;
  }
  return false;
}

bool SameEndpoint(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (!SameHost(a, b)) return false;
  if (a.ss_family == AF_INET) return reinterpret_cast<const sockaddr_in&>(a).sin_port == reinterpret_cast<const sockaddr_in&>(b).sin_port;
  return reinterpret_cast<const sockaddr_in6&>(a).sin6_port == reinterpret_cast<const sockaddr_in6&>(b).sin6_port;
}

// The two ends of one pair's connection, as Gloo set them up: this rank's listening address for
// the peer, and the peer's listening address for this rank.
struct PairEnds {
  sockaddr_storage ours, theirs;
};

// Duplicates of the process's sockets that are the pairs' connections. Of each pair, exactly one
// side connected (to the other's listening address) and the other accepted (on its listening
// address, which the accepted socket keeps as its own): a socket is pair i's when it is connected
// to i's address for us, or bound to our address for i and connected to i's host. The listening
// ports were bound by Gloo and only Gloo's sockets use them, so nothing else matches; a pair that
// does not have exactly one match is left out (Abort then relies on the timeout for it).
std::vector<int> DuplicateSockets(const std::vector<PairEnds>& pairs) {
  std::vector<std::vector<int>> found(pairs.size());
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return {};
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::atoi(e->d_name);
    struct stat st {};
    if (fd == dirfd(dir) || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage mine{}, theirs{};
    socklen_t a = sizeof mine, b = sizeof theirs;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&mine), &a) != 0) continue;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&theirs), &b) != 0) continue;
    for (size_t i = 0; i < pairs.size(); ++i) {
      if (SameEndpoint(theirs, pairs[i].theirs) || (SameEndpoint(mine, pairs[i].ours) && SameHost(theirs, pairs[i].theirs))) {
        found[i].push_back(fd);
      }
    }
  }
  closedir(dir);
  std::vector<int> dups;
  for (const std::vector<int>& fds : found) {
    if (fds.size() != 1) continue;
    const int dup = fcntl(fds[0], F_DUPFD_CLOEXEC, 0);
    if (dup >= 0) dups.push_back(dup);
  }
  return dups;
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

  // This rank's listening address for `peer`'s pair.
  sockaddr_storage OwnAddress(int peer) { return tcp::Address(getPair(peer)->address().bytes()).getSockaddr(); }

  void Connect(int peer, const std::vector<char>& address) { getPair(peer)->connect(address); }
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
  // Gloo has closed its descriptors; the connections end with ours.
  for (int fd : sockets_) ::close(fd);
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
  std::vector<PairEnds> pairs;
  std::vector<std::string> names(static_cast<size_t>(size));
  for (int i = 0; i < size; ++i) {
    if (i == rank) continue;
    const std::vector<char> address = mesh_->AddressFrom(i, published[size_t(i)]);
    try {
      mesh_->Connect(i, address);
    } catch (const std::exception& e) {
      Fail("ERR_DIST_CONNECT", "could not connect to rank " + std::to_string(i) + " within " +
                                   std::to_string(timeout.count()) + " ms: " + e.what());
    }
    const tcp::Address theirs(address);
    pairs.push_back(PairEnds{mesh_->OwnAddress(i), theirs.getSockaddr()});
    names[size_t(i)] = theirs.str();
  }
  std::vector<int> sockets = DuplicateSockets(pairs);
  std::lock_guard<std::mutex> lock(mu_);
  interruptible_ = sockets.size() == pairs.size();
  sockets_ = std::move(sockets);
  peer_names_ = std::move(names);
  context_ = mesh_;
  // An abort that came while connecting ends the connections just made.
  if (!aborted_.empty()) ShutdownSockets();
}

void GlooGroup::Submit(uint64_t ticket, std::string name, Run run) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(Job{ticket, std::move(name), std::move(run)});
    submitted_ = ticket + 1;
  }
  cv_.notify_all();
}

void GlooGroup::Wait(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return done_ > ticket || (!aborted_.empty() && !interruptible_); });
  auto it = failed_.find(ticket);
  if (it != failed_.end()) throw NativeError("cpu", OpScope::CurrentOp(), it->second.code, it->second.message);
  if (done_ <= ticket) throw NativeError("cpu", OpScope::CurrentOp(), "ERR_DIST_ABORTED", OpScope::CurrentOp() + ": " + aborted_);
}

uint64_t GlooGroup::Submitted() {
  std::lock_guard<std::mutex> lock(mu_);
  return submitted_;
}

void GlooGroup::WaitDone(uint64_t upto) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return done_ >= upto || (!aborted_.empty() && !interruptible_); });
}

void GlooGroup::Abort(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!aborted_.empty()) return;
    aborted_ = why;
    ShutdownSockets();
  }
  cv_.notify_all();
}

void GlooGroup::ShutdownSockets() {
  for (int fd : sockets_) ::shutdown(fd, SHUT_RDWR);
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
    // The job's buffers (its outputs among them) are released here, on this thread, before it
    // counts as done: a sync point after it sees them freed.
    job.run = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (failure) {
        if (broken_.empty()) {
          broken_code_ = failure->code;
          broken_ = failure->message;
          // The peers are still waiting in this collective: ending the connections makes them
          // fail now, naming this rank, rather than after their timeout.
          ShutdownSockets();
        }
        failed_[job.ticket] = std::move(*failure);
      }
      done_ = job.ticket + 1;
    }
    cv_.notify_all();
  }
}

GlooGroup::Outcome GlooGroup::Explain(const std::string& name, const std::string& what) {
  std::string aborted;
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(mu_);
    aborted = aborted_;
    names = peer_names_;
  }
  if (!aborted.empty()) return {"ERR_DIST_ABORTED", name + " failed: " + aborted};
  // Gloo's transport errors name the pair's peer by the address it published, which says which
  // rank it is. A timeout names none: with two ranks it can only be the other one; with more,
  // lib/distributed names a rank that left (its rendezvous connection closed) through Abort().
  std::string who = size == 2 ? "rank " + std::to_string(1 - rank) : "at least one other rank";
  for (size_t i = 0; i < names.size(); ++i) {
    if (!names[i].empty() && what.find(names[i]) != std::string::npos) who = "rank " + std::to_string(i);
  }
  if (what.find("Timed out") != std::string::npos || what.find("timeout") != std::string::npos) {
    return {"ERR_DIST_TIMEOUT", name + " timed out on rank " + std::to_string(rank) + " after " + std::to_string(timeout.count()) +
                                    " ms: " + who + " did not take part (it hangs, or it called other collectives in another order): " + what};
  }
  if (what.find("closed") != std::string::npos || what.find("reset") != std::string::npos || what.find("Read error") != std::string::npos) {
    return {"ERR_DIST_PEER_LOST", name + " failed on rank " + std::to_string(rank) + ": lost the connection to " + who +
                                      " (it exited, was killed, or its process group failed): " + what};
  }
  return {"ERR_DIST_FAILED", name + " failed on rank " + std::to_string(rank) + ": " + what};
}

}  // namespace cr::cpu
