// The process group of duet/dist.h: c10d's TCPStore for the rendezvous, ProcessGroupGloo for the
// collectives, and a local launcher (what torchrun does for one machine).
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "dist/collectives.h"
#include "duet/error.h"

namespace duet::dist {

namespace {

struct State {
  Options opt;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};
State& state() {
  static State s;
  return s;
}

// The first line of a c10d/Gloo message (they append C++ stack traces).
std::string first_line(const char* what) {
  std::string s(what);
  return s.substr(0, s.find('\n'));
}

// Runs a collective; a rank that died or hangs makes it throw (Gloo's timeout), which becomes one
// clear error instead of a stack trace.
template <class F>
void guarded(const std::string& what, F&& f) {
  const Options& o = state().opt;
  try {
    f();
  } catch (const std::exception& e) {
    fail("rank ", o.rank, " of ", o.world, ": ", what,
         " failed: another rank stopped, or did not answer within ", o.timeout_s, " s (",
         first_line(e.what()), ")");
  }
}

int env_int(const char* name, int lo, int hi, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < lo || x > hi)
    fail(name, "='", v, "': expected a whole number from ", lo, " to ", hi);
  return static_cast<int>(x);
}

std::pair<int64_t, int64_t> share_of(int r, int world, int64_t b0, int64_t e0) {
  const int64_t n = e0 - b0, q = n / world, extra = n % world;
  const int64_t b = b0 + r * q + std::min<int64_t>(r, extra);
  return {b, b + q + (r < extra ? 1 : 0)};
}

bool loopback(const std::string& addr) {
  return addr == "127.0.0.1" || addr == "localhost" || addr == "::1";
}

}  // namespace

Options from_env() {
  Options o;
  o.world = env_int("WORLD_SIZE", 1, 65536, 1);
  if (o.world > 1 && !std::getenv("RANK")) fail("WORLD_SIZE is ", o.world, " but RANK is not set");
  o.rank = env_int("RANK", 0, o.world - 1, 0);
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) o.addr = a;
  o.port = env_int("MASTER_PORT", 1, 65535, o.port);
  o.timeout_s = env_int("DUET_DIST_TIMEOUT", 1, 86400, o.timeout_s);
  return o;
}

void init(const Options& o) {
  State& s = state();
  if (s.pg) fail("internal: dist::init called twice");
  s.opt = o;
  if (o.world == 1) return;
  guarded("rendezvous with " + std::to_string(o.world) + " ranks at " + o.addr + ":" +
              std::to_string(o.port),
          [&] {
            c10d::TCPStoreOptions so;
            so.port = static_cast<uint16_t>(o.port);
            so.isServer = o.rank == 0;
            so.numWorkers = o.world;
            so.waitWorkers = true;
            so.timeout = std::chrono::seconds(o.timeout_s);
            s.store = c10::make_intrusive<c10d::TCPStore>(o.addr, so);
            auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::seconds(o.timeout_s));
            // One machine talks over loopback; across machines Gloo picks the interface of this
            // host's name.
            opts->devices.push_back(
                loopback(o.addr) ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                 : c10d::ProcessGroupGloo::createDefaultDevice());
            s.pg = c10::make_intrusive<c10d::ProcessGroupGloo>(s.store, o.rank, o.world, opts);
          });
}

int local_world() { return env_int("LOCAL_WORLD_SIZE", 1, 65536, 1); }

int rank() { return state().opt.rank; }
int world() { return state().opt.world; }

std::pair<int64_t, int64_t> share(int64_t b0, int64_t e0) {
  return share_of(rank(), world(), b0, e0);
}

void barrier() {
  if (world() == 1) return;
  guarded("barrier", [] { state().pg->barrier()->wait(); });
}

void all_reduce_sum(std::vector<torch::Tensor> ts) {
  if (world() == 1) return;
  torch::NoGradGuard ng;
  constexpr int64_t kBucket = 16 << 20;  // bytes
  for (size_t i = 0; i < ts.size();) {
    size_t j = i;
    int64_t bytes = 0;
    std::vector<torch::Tensor> flat;
    while (j < ts.size() && (j == i || bytes + ts[j].numel() * 4 <= kBucket)) {
      flat.push_back(ts[j].to(torch::kFloat32).reshape(-1));
      bytes += ts[j].numel() * 4;
      ++j;
    }
    std::vector<at::Tensor> buf{torch::cat(flat)};
    guarded("all-reduce", [&] { state().pg->allreduce(buf)->wait(); });
    int64_t off = 0;
    for (size_t k = i; k < j; ++k) {
      const int64_t n = ts[k].numel();
      ts[k].copy_(buf[0].slice(0, off, off + n).view(ts[k].sizes()));
      off += n;
    }
    i = j;
  }
}

void all_reduce_grads(const std::vector<torch::Tensor>& params) {
  if (world() == 1) return;
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    auto& g = const_cast<torch::Tensor&>(p).mutable_grad();
    if (!g.defined()) g = torch::zeros_like(p);
    grads.push_back(g);
  }
  all_reduce_sum(grads);
}

torch::Tensor all_gather_rows(const torch::Tensor& mine, int64_t n) {
  if (world() == 1) return mine;
  const int W = world();
  const int64_t most = share_of(0, W, 0, n).second;  // rank 0's share is the largest
  auto sizes = mine.sizes().vec();
  if (mine.size(0) != share(0, n).second - share(0, n).first)
    fail("internal: all_gather_rows got ", mine.size(0), " rows, not this rank's share");
  sizes[0] = most;
  auto padded = torch::zeros(sizes, torch::kFloat32);
  padded.slice(0, 0, mine.size(0)).copy_(mine);
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < W; ++r) out[0].push_back(torch::empty_like(padded));
  std::vector<at::Tensor> in{padded};
  guarded("all-gather", [&] { state().pg->allgather(out, in)->wait(); });
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < W; ++r) {
    auto [b, e] = share_of(r, W, 0, n);
    parts.push_back(out[0][r].slice(0, 0, e - b));
  }
  return torch::cat(parts);
}

bool all_agree(bool mine) {
  if (world() == 1) return mine;
  auto t = torch::tensor({mine ? 1.0f : 0.0f});
  all_reduce_sum({t});
  return t.item<float>() == static_cast<float>(world());
}

std::vector<double> sum(std::vector<double> v) {
  if (world() == 1 || v.empty()) return v;
  auto t = torch::from_blob(v.data(), {static_cast<int64_t>(v.size())}, torch::kFloat64).clone();
  std::vector<at::Tensor> buf{t};
  guarded("all-reduce", [&] { state().pg->allreduce(buf)->wait(); });
  std::copy(t.data_ptr<double>(), t.data_ptr<double>() + t.numel(), v.begin());
  return v;
}

Matrix gather_rows(const Matrix& mine, int64_t n) {
  if (world() == 1) return mine;
  auto t = torch::from_blob(const_cast<float*>(mine.data.data()), {mine.rows, mine.cols},
                            torch::kFloat32);
  auto all = all_gather_rows(t, n).contiguous();
  Matrix m(n, mine.cols);
  std::copy(all.data_ptr<float>(), all.data_ptr<float>() + all.numel(), m.data.begin());
  return m;
}

std::vector<std::string> gather_bytes(const std::string& mine) {
  if (world() == 1) return {mine};
  const int W = world();
  // Sizes first (every rank), then each rank's bytes padded to the largest, gathered on rank 0.
  std::vector<std::vector<at::Tensor>> sizes(1);
  for (int r = 0; r < W; ++r) sizes[0].push_back(torch::empty({1}, torch::kInt64));
  std::vector<at::Tensor> size{torch::tensor({static_cast<int64_t>(mine.size())}, torch::kInt64)};
  guarded("all-gather", [&] { state().pg->allgather(sizes, size)->wait(); });
  int64_t most = 1;
  for (const auto& s : sizes[0]) most = std::max(most, s.item<int64_t>());
  auto padded = torch::zeros({most}, torch::kUInt8);
  std::memcpy(padded.data_ptr<uint8_t>(), mine.data(), mine.size());
  std::vector<std::vector<at::Tensor>> out;
  if (rank() == 0) {
    out.resize(1);
    for (int r = 0; r < W; ++r) out[0].push_back(torch::empty({most}, torch::kUInt8));
  }
  std::vector<at::Tensor> in{padded};
  c10d::GatherOptions go;
  go.rootRank = 0;
  guarded("gather", [&] { state().pg->gather(out, in, go)->wait(); });
  std::vector<std::string> parts;
  if (rank() == 0)
    for (int r = 0; r < W; ++r)
      parts.emplace_back(reinterpret_cast<const char*>(out[0][r].data_ptr<uint8_t>()),
                         static_cast<size_t>(sizes[0][r].item<int64_t>()));
  return parts;
}

double divergence(const std::vector<torch::Tensor>& ts) {
  if (world() == 1) return 0;
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> flat;
  for (const auto& t : ts) flat.push_back(t.detach().to(torch::kFloat32).reshape(-1));
  auto mine = torch::cat(flat);
  std::vector<at::Tensor> first{mine.clone()};
  guarded("broadcast", [&] { state().pg->broadcast(first)->wait(); });
  std::vector<at::Tensor> worst{(mine - first[0]).abs().max().reshape({1})};
  guarded("all-reduce", [&] {
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::MAX;
    state().pg->allreduce(worst, o)->wait();
  });
  return worst[0].item<double>();
}

int spawn_local(int n, char** argv) {
  // A free port: bind port 0 on loopback and give it back (rank 0's TCPStore takes it next).
  int port = 0;
  {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      fail("cannot find a free port on 127.0.0.1 for the workers: ", std::strerror(errno));
    port = ntohs(a.sin_port);
    ::close(fd);
  }
  std::vector<pid_t> pids;
  for (int r = 0; r < n; ++r) {
    pid_t pid = ::fork();
    if (pid < 0) fail("cannot start worker ", r, ": ", std::strerror(errno));
    if (pid == 0) {
      ::setenv("RANK", std::to_string(r).c_str(), 1);
      ::setenv("WORLD_SIZE", std::to_string(n).c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", std::to_string(n).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      ::setenv("DUET_SPAWNED", "1", 1);
      if (r > 0) ::setenv("DUET_QUIET", "1", 1);  // one progress display: rank 0's
      ::execv("/proc/self/exe", argv);
      std::fprintf(stderr, "duet: error: cannot start worker %d: %s\n", r, std::strerror(errno));
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  int result = 0, left = n;
  while (left > 0) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    --left;
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (rc != 0 && result == 0) {
      result = rc;
      // The others would wait for it until their timeout: stop them now.
      for (pid_t p : pids)
        if (p != pid) ::kill(p, SIGTERM);
    }
  }
  return result;
}

}  // namespace duet::dist
