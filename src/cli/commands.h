// src/cli/commands.h — each verb of `duet` registers itself on the app.
//
// A verb fills its own options struct from flags and calls one library function; errors are
// thrown as duet::Error and become one line on stderr and exit code 1 in main.cpp.
#pragma once

#include <CLI/CLI.hpp>
#include <map>
#include <string>
#include <vector>

#include "duet/domain.h"
#include "duet/encoder.h"

namespace duet::cli {

void register_eval(CLI::App& app);
void register_split(CLI::App& app);
void register_embed(CLI::App& app);
void register_classify(CLI::App& app);
void register_train(CLI::App& app);
void register_map(CLI::App& app);
void register_run(CLI::App& app);
void register_baseline(CLI::App& app);
void register_model(CLI::App& app);
void register_index(CLI::App& app);
void register_shard(CLI::App& app);
void register_search(CLI::App& app);
void register_serve(CLI::App& app);
void register_tsne(CLI::App& app);
void register_report(CLI::App& app);

// Number checks whose messages read plainly ("--lr: must be positive (got 0)"); CLI11's own
// PositiveNumber prints its range as a 300-digit double.
extern const CLI::Validator positive, non_negative;

// --backbone/--weights/--threads, shared by every verb that runs a network.
void add_backbone_options(CLI::App* cmd, BackboneOptions& opt);

// --query-domain (repeatable), --gallery-domain and, with kinds, --domain-kind A=KIND,B=KIND:
// the domains of a run (duet/domain.h; empty = the defaults).
void add_domain_options(CLI::App* cmd, std::vector<std::string>& query, std::string& gallery,
                        std::map<std::string, DomainKind>* kinds = nullptr);

// --nproc N: data-parallel workers (duet/dist.h). Call workers_or_join(nproc) first in the
// verb's callback: with --nproc > 1 it runs the verb as that many local workers and exits with
// their status; otherwise it joins the process group the torchrun environment describes (RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT), if any.
void add_dist_options(CLI::App* cmd, int& nproc);
void workers_or_join(int nproc);
// main() records the command line for the workers.
void set_command_line(char** argv);

}  // namespace duet::cli
