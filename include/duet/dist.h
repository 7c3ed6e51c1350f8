// duet/dist.h — data-parallel workers on PyTorch's c10d (the Gloo backend over TCP).
//
// One process per rank, configured the way torchrun configures its workers: RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT (rendezvous through c10d's TCPStore, served by rank 0), and
// LOCAL_WORLD_SIZE (ranks on this machine: they split its cores). Every rank runs the same
// program on the same data and draws the same random numbers; a data-parallel step hands each
// rank a share of its minibatch and sums the gradients (src/dist/collectives.h), so the ranks
// keep identical parameters. Rank 0 alone writes files. With one rank nothing communicates, so the
// single-process path is the same code.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "duet/embeddings.h"

namespace duet::dist {

struct Options {
  int rank = 0, world = 1;
  std::string addr = "127.0.0.1";
  int port = 29500;
  int timeout_s = 300;  // rendezvous and every collective: a rank that is gone is an error by then
};

// From the environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; DUET_DIST_TIMEOUT seconds);
// world 1 when WORLD_SIZE is unset. Error on malformed values.
Options from_env();
// Joins the process group (rendezvous on MASTER_ADDR:MASTER_PORT); world 1: nothing. Once per
// process; Error when the other ranks do not arrive within the timeout.
void init(const Options& o);

int rank();
int world();
inline bool leader() { return rank() == 0; }
// Rows [b, e) of a global minibatch [b0, e0) that this rank handles: contiguous shares whose
// sizes differ by at most one, in rank order.
std::pair<int64_t, int64_t> share(int64_t b0, int64_t e0);
// Waits for every rank (Error when one is gone).
void barrier();
// True when every rank passes true: a decision all ranks must take alike (reuse a cache file
// or compute it) when each looked for itself.
bool all_agree(bool mine);
// Element-wise sums over the ranks (counts and totals for a report).
std::vector<double> sum(std::vector<double> v);
// Each rank's share (share(0, n)) of the rows of an n-row matrix: `mine` holds this rank's rows;
// every rank gets all n, in rank order.
Matrix gather_rows(const Matrix& mine, int64_t n);
// Each rank's bytes, in rank order, on rank 0; the other ranks get an empty list.
std::vector<std::string> gather_bytes(const std::string& mine);

// Ranks sharing this machine's cores (LOCAL_WORLD_SIZE; 1 when unset). Error when malformed.
int local_world();
// Runs this program (argv as given) as n local workers, ranks 0..n-1 on 127.0.0.1 and a free
// port, and waits for them; when one fails, the others are stopped. Returns the exit status: 0,
// or the first failing worker's.
int spawn_local(int n, char** argv);

}  // namespace duet::dist
