// duet serve — answer searches over HTTP and serve the drawing page (duet/serve.h).
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <thread>

#include "cli/commands.h"
#include "duet/error.h"
#include "duet/progress.h"
#include "duet/serve.h"
#include "duet/service.h"
#include "duet/shards.h"

namespace duet::cli {

namespace {
struct ServeArgs {
  std::string index, model;
  std::vector<std::string> shards;
  double deadline_s = 2;
  int threads = 0;
  ServeOptions opt;
};

void run_serve(const ServeArgs& a) {
  // SIGINT and SIGTERM are taken by one thread that stops the server, so a Ctrl-C ends it
  // cleanly (answers in flight finish) instead of killing it mid-write. Blocked before any
  // thread starts, so every worker inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  if (a.index.empty() == a.shards.empty())
    fail(
        "give --index (an index or one shard of it) or --shards (the shard servers' URLs), not "
        "both");
  std::unique_ptr<Retrieval> svc;
  if (a.shards.empty())
    svc = SearchService::open(a.index, a.model, a.threads);
  else
    svc = std::make_unique<ShardFront>(a.shards, a.model, a.threads, a.deadline_s);
  ServeOptions opt = a.opt;
  opt.log = !quiet();  // -q: no line per request
  HttpServer server(*svc, opt);
  const int port = server.bind();
  std::fprintf(stderr, "duet serve: %lld images (%s), model %s; listening on http://%s:%d/\n",
               static_cast<long long>(svc->size()), svc->index_type().c_str(),
               svc->model().info().dir.c_str(), a.opt.host.c_str(), port);
  std::fflush(stderr);
  std::thread stopper([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::fprintf(stderr, "duet serve: %s, stopping\n",
                 sig == SIGINT ? "interrupted" : "terminated");
    server.stop();
  });
  try {
    server.listen();
  } catch (...) {
    pthread_kill(stopper.native_handle(), SIGTERM);
    stopper.join();
    throw;
  }
  stopper.join();
}
}  // namespace

void register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  auto* c = app.add_subcommand(
      "serve", "serve a gallery index over HTTP, with a page to draw on (127.0.0.1 by default)");
  c->add_option("--index", a->index,
                "gallery index from `duet index`, or a shard of one from `duet shard`");
  c->add_option("--shards", a->shards,
                "serve as the front of these shard servers (http://host:port,...)")
      ->delimiter(',');
  c->add_option("--deadline", a->deadline_s,
                "with --shards: seconds each round of a query waits for a shard (one that misses "
                "it is left out: partial)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--model", a->model, "model folder (default: the one the index was built with)");
  c->add_option("--host", a->opt.host, "address to bind (0.0.0.0: every interface)")
      ->capture_default_str();
  c->add_option("--port", a->opt.port, "port (0: any free one, printed on stderr)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  c->add_option(
       "--workers", a->opt.workers,
       "searches at once (4 more connections are served beside them: health, metrics, thumbnails)")
      ->check(positive)
      ->capture_default_str();
  c->add_option("-t,--threads", a->threads, "CNN threads (0 = all cores)")
      ->check(non_negative)
      ->capture_default_str();
  c->add_option("--max-body", a->opt.max_body, "largest request body in bytes")
      ->check(positive)
      ->capture_default_str();
  c->add_option("--max-k", a->opt.max_k, "most results one query may ask for")
      ->check(positive)
      ->capture_default_str();
  c->add_option("--timeout", a->opt.timeout_s,
                "seconds a search may take from its first byte (read, decode, CNN, ranking: then "
                "503), and to read a request or write an answer")
      ->check(positive)
      ->capture_default_str();
  c->add_option("--keep-alive", a->opt.keep_alive_s, "seconds an idle connection stays open")
      ->check(positive)
      ->capture_default_str();
  c->callback([a] { run_serve(*a); });
}

}  // namespace duet::cli
