// fuzz/fuzz_search_request.cpp — a whole HTTP request, as arbitrary bytes, through cpp-httplib's
// server-side parsing (request line, headers, query string, Content-Length and chunked bodies,
// multipart forms) into the handler of /api/search, which reads it with parse_search_request.
//
// Beyond "returns or throws duet::Error": a refusal is an HttpError with one of the statuses the
// handler documents; an accepted request has k in [1, max_k] and either a row in [0, rows) or a
// non-empty image. httplib catches what a handler throws, so the handler checks and aborts itself.
//
// cpp-httplib is Debian's compiled library: it runs uninstrumented, so its own branches give the
// fuzzer no coverage (ASan still sees its memory calls); duet's parsing is what is measured.
#include <httplib.h>

#include "fuzz_util.h"
#include "serve/search_request.h"

namespace {

constexpr int64_t kMaxK = 1000, kRows = 50;

// The request's bytes as a connection that has sent them and nothing more; the answer is dropped.
class BytesStream : public httplib::Stream {
 public:
  explicit BytesStream(const std::string& bytes) : bytes_(bytes) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    const size_t n = std::min(size, bytes_.size() - at_);
    std::memcpy(ptr, bytes_.data() + at_, n);
    at_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char*, size_t size) override { return static_cast<ssize_t>(size); }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1", port = 40000;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1", port = 8080;
  }
  socket_t socket() const override { return INVALID_SOCKET; }

 private:
  const std::string& bytes_;
  size_t at_ = 0;
};

// process_request is protected: the one call that parses a request from a stream and routes it.
class Server : public httplib::Server {
 public:
  Server() {
    auto search = [](const httplib::Request& req, httplib::Response& res) {
      try {
        const duet::SearchRequest q = duet::parse_search_request(req, kMaxK, kRows);
        FUZZ_CHECK(q.k >= 1 && q.k <= kMaxK, "k = %lld", static_cast<long long>(q.k));
        FUZZ_CHECK(q.like < kRows && (q.like >= 0 || !q.image.empty()),
                   "like = %lld with %zu image bytes", static_cast<long long>(q.like),
                   q.image.size());
        res.status = 200;
      } catch (const duet::HttpError& e) {
        fuzz::refused(e);
        FUZZ_CHECK(e.status == 400 || e.status == 404 || e.status == 405 || e.status == 415,
                   "status %d: %s", e.status, e.what());
        res.status = e.status;
      } catch (const std::exception& e) {
        FUZZ_CHECK(false, "parse_search_request threw something else than HttpError: %s", e.what());
      }
    };
    Post("/api/search", search);
    Get("/api/search", search);
    // As duet serve: a small body limit, and a POST without its length refused before its body.
    set_payload_max_length(1 << 20);
    set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
      if ((req.method == "POST" || req.method == "PUT") && !req.has_header("Content-Length") &&
          !req.has_header("Transfer-Encoding")) {
        res.status = 411;
        return HandlerResponse::Handled;
      }
      return HandlerResponse::Unhandled;
    });
  }
  void handle(const std::string& bytes) {
    BytesStream s(bytes);
    bool closed = false;
    process_request(s, true, closed, nullptr);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Server server;
  server.handle(fuzz::bytes_of(data, size));
  return 0;
}
